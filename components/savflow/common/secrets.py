"""Keep secrets out of logs and files: which values are secret, and masking them wherever text goes out.

In a pod the environment holds tokens and keys (``KF_PIPELINES_TOKEN``, cloud credentials, anything a Secret
was mounted as with ``valueFrom.secretKeyRef`` or ``envFrom``), and some code prints the whole environment: the
sam2 trainer logs every variable when it starts (``training/utils/train_utils.py`` ``log_env_variables``, called
from ``training.trainer.Trainer.__init__`` right after it replaces the logging handlers). A process cannot tell
which of its variables came from a Secret, so the secret ones are chosen by name:

* a name with a part (split at ``_``, ``-``, ``.``) that is ``TOKEN``, ``KEY``, ``SECRET``, ``PASSWORD``,
  ``CREDENTIALS``, ... or ends with one (``APITOKEN``, ``ACCESSKEY``), e.g. ``KF_PIPELINES_TOKEN``,
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``HF_TOKEN``, ``DB_PASSWORD``;
* except where the value is the *path* of a secret (``..._FILE``, ``..._PATH``, ``..._DIR``,
  ``GOOGLE_APPLICATION_CREDENTIALS``, ``SAVFLOW_GCP_KEY_FILE``): the path is no secret, the file's secret fields are
  (``private_key``, ``private_key_id``, ``client_secret``, ``refresh_token`` of a JSON key file);
* and every name listed in ``$SAVFLOW_MASK_ENV`` (comma-separated), for a secret under an innocent name;
* plus any value handed to :func:`add_secret` (a token given as a command-line flag).

Values shorter than :data:`MIN_SECRET_LENGTH` or such as ``true``/``1`` are never masked: masking them would
garble every log line and hide nothing. A masked value becomes :data:`MASK`; its JSON-escaped form is masked
too (a value with a quote or a newline, e.g. a PEM key, appears escaped in JSON and YAML).

:func:`install_log_masking` masks every log record of the process when it is made (a log record factory, so
it holds whatever loggers and handlers the sam2 trainer sets up later) and uncaught tracebacks;
:func:`mask` and :func:`masking` are for text that leaves by other ways (files written, streamed pod logs).
Standard library only: the CLI modules may import it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

MASK = "***"
MASK_ENV = "SAVFLOW_MASK_ENV"
MIN_SECRET_LENGTH = 6
KEY_FILE_MAX_BYTES = 1 << 20

# name parts that mark a secret, and endings of a part that do (APITOKEN, ACCESSKEY, DBPASSWORD)
SECRET_PARTS = frozenset({"TOKEN", "TOKENS", "KEY", "KEYS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE",
                          "CREDENTIAL", "CREDENTIALS", "CREDS", "APIKEY", "AUTH", "AUTHORIZATION", "COOKIE", "COOKIES",
                          "SIGNATURE"})
SECRET_ENDINGS = ("TOKEN", "SECRET", "PASSWORD", "APIKEY", "ACCESSKEY", "SECRETKEY", "PRIVATEKEY")
# last name parts whose value is where a secret lives, not the secret
PATH_PARTS = frozenset({"FILE", "PATH", "DIR", "HOME", "SOCK"})
# variables whose value is the path of a key file
KEY_FILE_VARS = ("GOOGLE_APPLICATION_CREDENTIALS", "SAVFLOW_GCP_KEY_FILE")  # the second: deployment.KEY_FILE_ENV
KEY_FILE_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token")
NOT_SECRET_VALUES = frozenset({"true", "false", "yes", "no", "none", "null", "enabled", "disabled", "default"})

_added: set[str] = set()
_lock = threading.Lock()
_installed = False


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """Whether a variable called ``name`` holds a secret value (see the module docstring)."""
    if name in extra:
        return True
    if name in KEY_FILE_VARS:
        return False
    parts = [p for p in re.split(r"[^A-Z0-9]+", name.upper()) if p]
    if not parts or parts[-1] in PATH_PARTS:
        return False
    return any(p in SECRET_PARTS or p.endswith(SECRET_ENDINGS) for p in parts)


def _maskable(value: str) -> bool:
    return len(value.strip()) >= MIN_SECRET_LENGTH and value.strip().lower() not in NOT_SECRET_VALUES


def _key_file_secrets(path: str) -> set[str]:
    """The secret fields of a JSON key file (a GCP service-account key), if it can be read."""
    try:
        file = Path(path)
        if not file.is_file() or file.stat().st_size > KEY_FILE_MAX_BYTES:
            return set()
        doc = json.loads(file.read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(doc, dict):
        return set()
    return {doc[k] for k in KEY_FILE_FIELDS if isinstance(doc.get(k), str)}


@functools.lru_cache(maxsize=64)
def _key_file_secrets_cached(path: str, mtime_ns: int) -> frozenset[str]:
    return frozenset(_key_file_secrets(path))


def _key_file_values(environ: Mapping[str, str]) -> set[str]:
    out: set[str] = set()
    for var in KEY_FILE_VARS:
        path = environ.get(var)
        if not path:
            continue
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            continue
        out |= _key_file_secrets_cached(path, mtime)
    return out


def secret_values(environ: Mapping[str, str] | None = None, *, extra_names: Iterable[str] = ()) -> set[str]:
    """The values to mask: those of ``environ``'s secret-looking variables (``os.environ`` by default), the
    secret fields of its key files, the names in ``$SAVFLOW_MASK_ENV`` and ``extra_names``, and every value
    given to :func:`add_secret`; each with its JSON-escaped form when that differs."""
    environ = os.environ if environ is None else environ
    extra = frozenset(n.strip() for n in (*environ.get(MASK_ENV, "").split(","), *extra_names) if n.strip())
    raw = {v for k, v in list(environ.items()) if v and is_secret_name(k, extra)}
    raw |= _key_file_values(environ)
    with _lock:
        raw |= _added
    out = set()
    for value in raw:
        if not _maskable(value):
            continue
        out.add(value)
        escaped = json.dumps(value)[1:-1]
        if escaped != value:
            out.add(escaped)
    return out


def add_secret(value: str | None) -> None:
    """Mask ``value`` from now on in this process (e.g. a token that came as a command-line flag)."""
    if value and _maskable(value):
        with _lock:
            _added.add(value)


@functools.lru_cache(maxsize=32)
def _pattern(values: frozenset[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def mask(text: str, secrets: Iterable[str] | None = None, *, extra: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret value replaced by :data:`MASK`: ``secrets``, by default :func:`secret_values`
    of this process, plus those of ``extra`` (the environment given to another process, e.g. a training job's
    ``env``), chosen by name the same way."""
    values = set(secret_values() if secrets is None else secrets)
    if extra:
        values |= secret_values(extra)
    if not values or not text:
        return text
    return _pattern(frozenset(values)).sub(MASK, text)


def mask_data(data: Any, secrets: Iterable[str] | None = None) -> Any:
    """``data`` (dicts, lists, tuples, strings, other scalars) with :func:`mask` applied to every string in it,
    keys included; for structured files, which masked as text could stop parsing (``key: ***`` is a YAML alias)."""
    values = frozenset(secret_values() if secrets is None else secrets)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return mask(item, values)
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(walk(v) for v in item)
        return item

    return walk(data) if values else data


def masking(emit: Callable[[str], None], *, extra: Mapping[str, str] | None = None) -> Callable[[str], None]:
    """``emit`` that passes each line through :func:`mask` first (with ``extra`` as there)."""
    others = frozenset(secret_values(extra)) if extra else frozenset()

    def masked(line: str) -> None:
        emit(mask(line, secret_values() | others))

    return masked


def mask_record(record: logging.LogRecord, secrets: Iterable[str] | None = None) -> logging.LogRecord:
    """Mask a log record in place: its message (formatted with its args) and its traceback text."""
    values = frozenset(secret_values() if secrets is None else secrets)
    if not values:
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the handler's to report, as without masking
        return record
    masked = mask(message, values)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask(record.exc_text, values)
    if record.stack_info:
        record.stack_info = mask(record.stack_info, values)
    return record


class MaskingFilter(logging.Filter):
    """A filter that masks each record passing through (for a handler or logger of one's own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def install_log_masking() -> None:
    """Mask every log record made in this process from now on, and uncaught tracebacks.

    A log record factory sees every record of every logger before any handler does, so it still holds after
    the sam2 trainer replaces the root logger and its handlers (``training/utils/logger.py`` ``setup_logging``).
    The secret values are read from the environment at each record: variables set later (the trainer's
    ``env_variables``) are masked too. Calling it again does nothing.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous_factory = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        return mask_record(previous_factory(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    previous_hook = sys.excepthook

    def excepthook(kind, value, tb) -> None:  # noqa: ANN001 - sys.excepthook's signature
        import traceback

        sys.stderr.write(mask("".join(traceback.format_exception(kind, value, tb))))

    if previous_hook is sys.__excepthook__:
        sys.excepthook = excepthook
