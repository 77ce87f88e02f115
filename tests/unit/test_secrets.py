"""Which values :mod:`savflow.common.secrets` takes for secrets, and masking them in text and log records."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap

import pytest

from savflow.common import secrets


@pytest.mark.parametrize("name", ["KF_PIPELINES_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                  "AWS_SESSION_TOKEN", "HF_TOKEN", "DB_PASSWORD", "GITHUB_APITOKEN",
                                  "MY_SERVICE_ACCESSKEY", "api-key", "OPENAI_API_KEY", "REGISTRY_CREDENTIALS"])
def test_secret_names(name: str) -> None:
    assert secrets.is_secret_name(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "PWD", "MONKEY", "KF_PIPELINES_SA_TOKEN_PATH", "SSH_AUTH_SOCK",
                                  "GOOGLE_APPLICATION_CREDENTIALS", "AWS_SHARED_CREDENTIALS_FILE", "AWS_REGION",
                                  "KF_PIPELINES_ENDPOINT", "MASTER_ADDR", "TOKENIZERS_PARALLELISM"])
def test_not_secret_names(name: str) -> None:
    assert not secrets.is_secret_name(name)


def test_secret_values_by_name_mask_env_and_key_file(tmp_path) -> None:
    key = tmp_path / "key.json"
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEabc\n-----END PRIVATE KEY-----\n"
    key.write_text(json.dumps({"type": "service_account", "private_key_id": "0123456789abcdef",
                               "private_key": pem, "client_email": "sa@p.iam.gserviceaccount.com"}))
    env = {"KF_PIPELINES_TOKEN": "sekret-xyz-123", "AWS_SECRET_ACCESS_KEY": "aws/SECRET+key",
           "INNOCENT": "hidden-value-9", secrets.MASK_ENV: "INNOCENT", "USE_KEY": "true", "SHORT_TOKEN": "abc",
           "GOOGLE_APPLICATION_CREDENTIALS": str(key), "PATH": "/usr/bin"}
    values = secrets.secret_values(env)
    assert {"sekret-xyz-123", "aws/SECRET+key", "hidden-value-9", "0123456789abcdef", pem} <= values
    assert json.dumps(pem)[1:-1] in values, "the JSON-escaped PEM too"
    assert not values & {"true", "abc", str(key), "/usr/bin", "sa@p.iam.gserviceaccount.com"}


def test_mask_replaces_longest_first_and_leaves_other_text() -> None:
    text = "token=sekret-xyz-123 and sekret-xyz-123456 stay apart; nothing else"
    out = secrets.mask(text, {"sekret-xyz-123", "sekret-xyz-123456"})
    assert out == "token=*** and *** stay apart; nothing else"
    assert secrets.mask(text, set()) == text
    assert secrets.mask("a KF_PIPELINES_TOKEN=s3cr3t-value line", extra={"KF_PIPELINES_TOKEN": "s3cr3t-value"}) \
        == "a KF_PIPELINES_TOKEN=*** line"


def test_masking_emit_uses_the_jobs_env(monkeypatch) -> None:
    monkeypatch.setenv("LAUNCHER_TOKEN", "launcher-token-1")
    lines: list[str] = []
    emit = secrets.masking(lines.append, extra={"WANDB_API_KEY": "wandb-key-77", "EPOCHS": "wandb-key-77x"})
    emit("wandb-key-77 launcher-token-1 ok")
    assert lines == ["*** *** ok"]


def test_log_masking_survives_handlers_and_root_being_replaced() -> None:
    """In a fresh interpreter: install, then do what sam2's setup_logging does (new handlers, logging.root
    replaced by another logger) and log the environment the way log_env_variables does."""
    script = textwrap.dedent("""
        import logging, os, sys
        from savflow.common import secrets
        secrets.install_log_masking()
        os.environ["LATE_SECRET_TOKEN"] = "set-after-install-42"
        logger = logging.getLogger("training.trainer")
        logger.root.handlers = []
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel("INFO")
        logging.root = logger
        logging.info("Logging ENV_VARIABLES")
        logging.info("".join(f"{k}={v}\\n" for k, v in sorted(os.environ.items())))
        logging.getLogger("other").warning("warn %s", os.environ["KF_PIPELINES_TOKEN"])
        try:
            raise RuntimeError("boom " + os.environ["KF_PIPELINES_TOKEN"])
        except RuntimeError:
            logging.exception("failed")
        raise RuntimeError("uncaught " + os.environ["KF_PIPELINES_TOKEN"])
    """)
    env = {"KF_PIPELINES_TOKEN": "sekret-xyz-123", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    out = proc.stdout + proc.stderr
    assert "Logging ENV_VARIABLES" in out and "KF_PIPELINES_TOKEN=***" in out, out
    assert "LATE_SECRET_TOKEN=***" in out and "boom ***" in out and "uncaught ***" in out, out
    assert "sekret-xyz-123" not in out and "set-after-install-42" not in out, out


def test_masking_filter_and_bad_records() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(secrets.MaskingFilter())
    logger = logging.getLogger("test-secrets-filter")
    logger.addHandler(handler)
    logger.propagate = False
    secrets.add_secret("flag-token-0001")
    logger.warning("given %s", "flag-token-0001")
    logger.warning("bad format %d", "x")  # left to the handler to report, as without masking
    assert "given ***" in stream.getvalue() and "flag-token-0001" not in stream.getvalue()


def test_mask_data_keeps_structure_and_yaml_valid() -> None:
    import yaml

    data = {"scratch": {"note": "sekret-xyz-123", "lr": 1e-4, "list": ["a", "x sekret-xyz-123 y"]}, "n": None}
    masked = secrets.mask_data(data, {"sekret-xyz-123"})
    assert masked == {"scratch": {"note": "***", "lr": 1e-4, "list": ["a", "x *** y"]}, "n": None}
    assert yaml.safe_load(yaml.safe_dump(masked)) == masked, "masked as data, the YAML still parses"
    assert secrets.mask_data(data, set()) is data
