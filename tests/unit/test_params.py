"""Pipeline parameters: key=value parsing, typing by look and by the pipeline's declared types, file merge."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from savflow.pipelines.params import (ParamError, convert_text, guess_value, load_params_file, parse_assignment,
                                      parse_assignments, resolve_params)

DECLARED = {"epochs": "NUMBER_INTEGER", "lr": "NUMBER_DOUBLE", "resume": "BOOLEAN", "video_list": "STRING",
            "gpus": "LIST", "extra": "STRUCT"}


def test_parse_assignment_splits_at_first_equals_and_keeps_raw_text():
    assert parse_assignment("filter=a=b") == ("filter", "a=b")
    assert parse_assignment("empty=") == ("empty", "")
    assert parse_assignment("name= padded ") == ("name", " padded ")


@pytest.mark.parametrize("text", ["noequals", "=x", "1abc=2", "a-b=1", "a.b=1"])
def test_parse_assignment_rejects_bad_keys(text):
    with pytest.raises(ParamError, match="--param"):
        parse_assignment(text)


def test_parse_assignments_rejects_duplicates():
    with pytest.raises(ParamError, match="epochs given twice"):
        parse_assignments(["epochs=1", "epochs=2"])


@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("-4", -4), ("0", 0), ("2.5", 2.5), ("1e-3", 0.001), (".5", 0.5),
    ("true", True), ("False", False), ("[1, 2]", [1, 2]), ('{"a": [1]}', {"a": [1]}),
    ("007", "007"), ("nan", "nan"), ("inf", "inf"), ("gs://b/x", "gs://b/x"), ("[not json", "[not json"),
    ("", ""), ("yes", "yes"),
])
def test_guess_value(text, expected):
    value = guess_value(text)
    assert value == expected and type(value) is type(expected)


@given(st.integers(min_value=-10**30, max_value=10**30))
def test_guess_value_round_trips_integers(n):
    assert guess_value(str(n)) == n


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_guess_value_round_trips_floats(x):
    assert guess_value(repr(x)) == x


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20))
def test_declared_string_keeps_text_unchanged(text):
    assert convert_text("video_list", text, "STRING") == text


@pytest.mark.parametrize("text, ptype, expected", [
    ("007", "NUMBER_INTEGER", 7), ("3", "NUMBER_DOUBLE", 3.0), ("1e2", "NUMBER_DOUBLE", 100.0),
    ("yes", "BOOLEAN", True), ("0", "BOOLEAN", False), ("007", "STRING", "007"), ("true", "STRING", "true"),
    ('["a", "b"]', "LIST", ["a", "b"]), ('{"k": 1}', "STRUCT", {"k": 1}),
])
def test_convert_text_by_declared_type(text, ptype, expected):
    value = convert_text("p", text, ptype)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text, ptype, needle", [
    ("2.5", "NUMBER_INTEGER", "an integer"), ("abc", "NUMBER_DOUBLE", "a number"),
    ("nan", "NUMBER_DOUBLE", "a number"),
    ("maybe", "BOOLEAN", "true or false"), ("[1,", "LIST", "JSON"), ('{"a": 1}', "LIST", "a JSON list"),
    ("[1]", "STRUCT", "a JSON object"),
])
def test_convert_text_errors_name_the_parameter_and_type(text, ptype, needle):
    with pytest.raises(ParamError) as err:
        convert_text("knob", text, ptype)
    assert "knob" in str(err.value) and ptype in str(err.value) and needle in str(err.value)


def test_resolve_cli_wins_over_file_and_values_are_typed(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("epochs: 5\nlr: 1\nvideo_list: '007'\ngpus: [0, 1]\nresume: false\n")
    out = resolve_params(load_params_file(f), parse_assignments(["epochs=7", "resume=true"]), DECLARED, str(f))
    assert out == {"epochs": 7, "lr": 1.0, "video_list": "007", "gpus": [0, 1], "resume": True}
    assert type(out["lr"]) is float


def test_resolve_without_declared_types_guesses_cli_and_keeps_file_values(tmp_path):
    out = resolve_params({"a": "x", "b": 2}, {"b": "3.5", "c": "007"})
    assert out == {"a": "x", "b": 3.5, "c": "007"}


def test_resolve_rejects_unknown_names_listing_the_known_ones():
    with pytest.raises(ParamError) as err:
        resolve_params({"epoch": 1}, {"lrate": "0.1"}, DECLARED)
    msg = str(err.value)
    assert "epoch, lrate" in msg and "epochs" in msg and "video_list" in msg


@pytest.mark.parametrize("yaml_text, needle", [
    ("video_list: 007\n", "quote it"),          # YAML reads 007 as the int 7: refused, not silently "7"
    ("epochs: 2.5\n", "an integer"),
    ("epochs: true\n", "an integer"),
    ("lr: .nan\n", "a finite number"),
    ("resume: 1\n", "true or false"),
    ("gpus: 0\n", "a list"),
    ("extra: [1]\n", "a mapping"),
])
def test_resolve_checks_file_values_against_declared_types(tmp_path, yaml_text, needle):
    f = tmp_path / "p.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ParamError) as err:
        resolve_params(load_params_file(f), {}, DECLARED, str(f))
    assert str(f) in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize("text, needle", [("- a\n- b\n", "expected a mapping"), ("1: x\n", "not a parameter name"),
                                          ("a: [\n", "cannot read")])
def test_load_params_file_errors_name_the_file(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ParamError) as err:
        load_params_file(f)
    assert str(f) in str(err.value) and needle in str(err.value)


def test_load_params_file_empty_is_no_params(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing\n")
    assert load_params_file(f) == {}


def test_missing_params_file_is_a_param_error(tmp_path):
    with pytest.raises(ParamError, match="cannot read"):
        load_params_file(tmp_path / "absent.yaml")


def test_float_check_accepts_int_from_yaml():
    out = resolve_params({"lr": 2}, {}, DECLARED)
    assert out["lr"] == 2.0 and isinstance(out["lr"], float) and not math.isnan(out["lr"])


def test_string_values_of_a_configmap_export_are_typed_like_cli_values(tmp_path):
    """`kubectl get configmap savflow-defaults -o jsonpath='{.data}'` gives strings only."""
    f = tmp_path / "params.json"
    f.write_text('{"epochs": "40", "lr": "0.5", "resume": "true", "gpus": "[0, 1]", "video_list": "007"}')
    got = resolve_params(load_params_file(f), {}, DECLARED, str(f))
    assert got == {"epochs": 40, "lr": 0.5, "resume": True, "gpus": [0, 1], "video_list": "007"}
    f.write_text('{"epochs": "forty"}')
    with pytest.raises(ParamError, match="epochs"):
        resolve_params(load_params_file(f), {}, DECLARED, str(f))
