"""Pipeline parameters from the command line (``key=value``) and from a YAML file, merged and typed.

A user writes ``--param epochs=3 --param video_list=007.txt``; the KFP API wants JSON values of the types the
pipeline declares, and rejects a run whose ``epochs`` is the string ``"3"``. When the compiled pipeline is at hand
its declared input types decide (so ``007`` stays a string where the pipeline wants a string, and ``[1, 2]``
must be valid JSON where it wants a list); without it a value is typed by its look. Command-line values win over
the file's.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?[0-9]+")
_PLAIN_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

# KFP IR parameter types (pipeline_spec ParameterType enum names) of a pipeline's root inputs.
STRING = "STRING"
NUMBER_INTEGER = "NUMBER_INTEGER"
NUMBER_DOUBLE = "NUMBER_DOUBLE"
BOOLEAN = "BOOLEAN"
LIST = "LIST"
STRUCT = "STRUCT"


class ParamError(ValueError):
    """A parameter that cannot be used; the message names the parameter and where it came from."""


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``key=value`` at the first ``=``; the value is kept as raw text so that typing can use the spec."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise ParamError(f"--param {text!r}: expected key=value")
    if not _KEY.fullmatch(key):
        raise ParamError(f"--param {text!r}: {key!r} is not a parameter name (letters, digits, _)")
    return key, value


def parse_assignments(texts: Sequence[str]) -> dict[str, str]:
    """Every ``--param`` as raw text; the same key twice is an error rather than a silent last-one-wins."""
    out: dict[str, str] = {}
    for text in texts:
        key, value = parse_assignment(text)
        if key in out:
            raise ParamError(f"--param {key} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def guess_value(text: str) -> Any:
    """Type a command-line value by its look: bool, int, float, JSON list/object, else the string itself.

    Numbers with leading zeros (``007``) and words like ``nan`` stay strings, since they are more often names.
    """
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if _PLAIN_INT.fullmatch(text.strip()):
        return int(text)
    if _FLOAT.fullmatch(text.strip()):
        return float(text)
    if text.lstrip().startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def load_params_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of parameter name to value; anything else is an error naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamError(f"{path}: cannot read parameters: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamError(f"{path}: expected a mapping of parameter name to value, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ParamError(f"{path}: {key!r} is not a parameter name (letters, digits, _)")
    return data


def convert_text(key: str, text: str, param_type: str) -> Any:
    """Convert one command-line value to the declared KFP parameter type, or fail naming the parameter."""
    def bad(expected: str) -> ParamError:
        return ParamError(f"--param {key}={text!r}: the pipeline declares {param_type}, expected {expected}")

    if param_type == STRING:
        return text
    if param_type == NUMBER_INTEGER:
        if not _INT.fullmatch(text.strip()):
            raise bad("an integer")
        return int(text)
    if param_type == NUMBER_DOUBLE:
        if not (_INT.fullmatch(text.strip()) or _FLOAT.fullmatch(text.strip())):
            raise bad("a number")
        return float(text)
    if param_type == BOOLEAN:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise bad("true or false")
    if param_type in (LIST, STRUCT):
        want = list if param_type == LIST else dict
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise bad(f"JSON ({exc.msg})") from exc
        if not isinstance(value, want):
            raise bad(f"a JSON {'list' if want is list else 'object'}")
        return value
    return guess_value(text)


def check_value(key: str, value: Any, param_type: str, source: str) -> Any:
    """Check a YAML-typed value against the declared type; ints pass where a float is declared.

    A string where something else is declared is read the way a ``--param`` value is: a Kubernetes ConfigMap
    (``k8s/base/config/defaults.yaml``) holds only strings, and its ``.data`` is meant to serve as a params file.
    """
    if isinstance(value, str) and param_type != STRING:
        return convert_text(key, value, param_type)

    def bad(expected: str) -> ParamError:
        return ParamError(f"{source}: {key}: {value!r} is {type(value).__name__}, the pipeline declares "
                          f"{param_type} ({expected})")

    if param_type == STRING:
        if not isinstance(value, str):
            raise bad("quote it in YAML to pass it as a string")
        return value
    if param_type == NUMBER_INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if param_type == NUMBER_DOUBLE:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if param_type == BOOLEAN:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if param_type == LIST and not isinstance(value, list):
        raise bad("a list")
    if param_type == STRUCT and not isinstance(value, dict):
        raise bad("a mapping")
    return value


def resolve_params(file_params: Mapping[str, Any], cli_params: Mapping[str, str],
                   declared: Mapping[str, str] | None = None, file_name: str = "params file") -> dict[str, Any]:
    """Merge file values and raw command-line values (command line wins) and type them.

    ``declared`` maps the pipeline's input names to KFP parameter types; when given, a name the pipeline does
    not have is an error listing the names it has, and each value is converted or checked against its type.
    """
    if declared is not None:
        unknown = sorted((set(file_params) | set(cli_params)) - set(declared))
        if unknown:
            raise ParamError(f"unknown pipeline parameter(s) {', '.join(unknown)}; the pipeline has: "
                             f"{', '.join(sorted(declared)) or '(none)'}")
    out: dict[str, Any] = {}
    for key, value in file_params.items():
        if key in cli_params:
            continue
        out[key] = value if declared is None else check_value(key, value, declared[key], file_name)
    for key, text in cli_params.items():
        out[key] = guess_value(text) if declared is None else convert_text(key, text, declared[key])
    return out
