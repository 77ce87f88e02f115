"""`savflow submit`, `savflow schedule` and `savflow compile` against a local KFP v2 REST API server.

The real kfp.Client (no patching) talks HTTP to :mod:`kfp_fake_server`, which records every request; the tests
assert on what the client sent: the experiment get-or-create, typed runtime parameters, the 6-field cron with
seconds, max concurrency, no catch-up, start/end times, tokens. The pipeline is a tiny one compiled here, since
the verbs do not depend on what the pipeline does. (No ``from __future__ import annotations`` here: kfp reads the
component's annotations as types.)
"""

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kfp import dsl
from kfp_fake_server import KfpFakeServer

from savflow.pipelines import compile as compile_mod
from savflow.pipelines import cron, kfp_client, schedules, verbs_cli


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def _echo(checkpoint: str, shards: int, threshold: float, strict: bool, videos: list) -> str:
    return f"{checkpoint} {shards} {threshold} {strict} {videos}"


@dsl.pipeline(name="tiny-eval", description="A stand-in for sav-evaluate with one parameter of each type.")
def tiny_eval(checkpoint: str = "gs://b/ckpt.pt", shards: int = 2, threshold: float = 1.0, strict: bool = False,
              videos: list = ["sav_000001"]):
    _echo(checkpoint=checkpoint, shards=shards, threshold=threshold, strict=strict, videos=videos)


TINY_REGISTRY = {"tiny-eval": (__name__, "tiny_eval")}


@pytest.fixture(autouse=True)
def _clean_kfp_env(monkeypatch):
    """The client reads these; a developer's shell must not change what the tests send."""
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_TOKEN", "KF_PIPELINES_COOKIES",
                 "KF_PIPELINES_CA_CERT", "KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
                 "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME", "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    with KfpFakeServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return compile_mod.compile_pipeline("tiny-eval", tmp_path_factory.mktemp("pkg") / "tiny-eval.yaml",
                                        TINY_REGISTRY)


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="savflow")
    verbs_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def fields(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


# --- submit ---------------------------------------------------------------------------------------------------

def test_submit_creates_experiment_and_run_with_typed_params(server, package, tmp_path, capsys):
    params_file = tmp_path / "p.yaml"
    params_file.write_text("shards: 8\nthreshold: 2\nvideos: [sav_000002, sav_000003]\n")
    rc, out, _ = cli(["submit", str(package), "--host", server.url, "--token", "s3cret", "--experiment", "nightly",
                      "--run-name", "eval-1", "--params-file", str(params_file), "--param", "shards=4",
                      "--param", "checkpoint=007", "--param", "strict=true"], capsys)
    assert rc == 0

    (listed,) = server.requests_to("GET", "/experiments")
    pred = json.loads(listed.query["filter"][0])["predicates"][0]
    assert pred["key"] == "display_name" and pred["stringValue"] == "nightly"
    (created,) = server.requests_to("POST", "/experiments")
    assert created.body["display_name"] == "nightly"

    (run_req,) = server.requests_to("POST", "/runs")
    body = run_req.body
    assert body["display_name"] == "eval-1"
    assert body["experiment_id"] == next(iter(server.experiments))
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "tiny-eval"
    assert "pipeline_version_reference" not in body
    # CLI wins over the file; string params stay strings ("007"), ints from YAML become floats where declared
    assert body["runtime_config"]["parameters"] == {
        "shards": 4, "threshold": 2.0, "videos": ["sav_000002", "sav_000003"], "checkpoint": "007", "strict": True}
    assert run_req.headers["authorization"] == "Bearer s3cret"

    info = fields(out)
    run_id = next(iter(server.runs))
    assert info == {"run_id": run_id, "url": f"{server.url}/#/runs/details/{run_id}"}
    assert not server.requests_to("GET", f"/runs/{run_id}"), "no --wait: the run is not polled"


def test_dry_run_prints_the_typed_parameters_and_sends_nothing(server, package, capsys):
    rc, out, err = cli(["submit", str(package), "--host", server.url, "--experiment", "nightly", "--dry-run",
                        "--param", "shards=4", "--param", "checkpoint=007", "--param", "videos=[\"sav_000002\"]"],
                       capsys)
    assert rc == 0, err
    assert json.loads(out) == {"pipeline": "tiny-eval", "experiment": "nightly", "run_name": None,
                               "parameters": {"shards": 4, "checkpoint": "007", "videos": ["sav_000002"]}}
    assert server.requests == []
    rc, _, err = cli(["submit", str(package), "--host", server.url, "--dry-run", "--param", "shards=four"], capsys)
    assert rc == 2 and "shards" in err and server.requests == []
    rc, out, err = cli(["schedule", "create", "--pipeline", str(package), "--host", server.url, "--name", "nightly",
                        "--cron", "0 3 * * *", "--dry-run", "--param", "shards=2"], capsys)
    assert rc == 0, err
    assert json.loads(out) == {"pipeline": "tiny-eval", "experiment": "Default", "name": "nightly",
                               "cron": "0 0 3 * * *", "parameters": {"shards": 2}}
    assert server.requests == []


def test_submit_reuses_an_existing_experiment(server, package, capsys):
    for _ in range(2):
        assert cli(["submit", str(package), "--host", server.url, "--experiment", "nightly"], capsys)[0] == 0
    assert len(server.requests_to("POST", "/experiments")) == 1
    assert len(server.requests_to("GET", "/experiments")) == 2
    assert len({r["experiment_id"] for r in server.runs.values()}) == 1


@pytest.mark.parametrize("final, rc", [("SUCCEEDED", 0), ("FAILED", 1), ("CANCELED", 1)])
def test_submit_wait_reports_the_final_state(server, package, capsys, final, rc):
    server.final_state = final
    server.polls_to_finish = 3
    code, out, _ = cli(["submit", str(package), "--host", server.url, "--wait", "--poll-interval", "0.01"], capsys)
    assert code == rc
    info = fields(out)
    assert info["state"] == final
    assert len(server.requests_to("GET", f"/runs/{info['run_id']}")) == 3
    assert [h["state"] for h in server.runs[info["run_id"]]["state_history"]] == ["PENDING", "RUNNING", final]


def test_submit_wait_times_out_with_exit_1(server, package, capsys):
    server.final_state = None
    rc, _, err = cli(["submit", str(package), "--host", server.url, "--wait", "--timeout", "0.2",
                      "--poll-interval", "0.02"], capsys)
    assert rc == 1 and "still RUNNING after 0.2 s" in err


@pytest.mark.parametrize("argv, needle", [
    (["--param", "shards=two"], "shards"),
    (["--param", "shard=2"], "unknown pipeline parameter(s) shard"),
    (["--param", "videos=[1,"], "videos"),
])
def test_submit_rejects_bad_params_before_contacting_the_server(server, package, capsys, argv, needle):
    rc, _, err = cli(["submit", str(package), "--host", server.url, *argv], capsys)
    assert rc == 2 and needle in err
    assert server.requests == []


def test_submit_unknown_pipeline_name_is_an_input_error(server, capsys):
    rc, _, err = cli(["submit", "no-such-pipeline", "--host", server.url], capsys)
    assert rc == 2 and "sav-finetune" in err and server.requests == []


def test_submit_upload_stores_a_content_named_version_once(server, package, capsys):
    for _ in range(2):
        assert cli(["submit", str(package), "--host", server.url, "--upload"], capsys)[0] == 0
    (create,) = server.requests_to("POST", "/pipelines")
    assert create.body == {"display_name": "tiny-eval"}
    (upload,) = server.requests_to("POST", "/pipelines/upload_version")
    assert upload.body["files"]["uploadfile"]["content"] == package.read_text()
    (version,) = server.versions.values()
    assert upload.query["name"] == [version["display_name"]] and version["display_name"].startswith("tiny-eval-")
    runs = server.requests_to("POST", "/runs")
    assert len(runs) == 2
    for r in runs:
        assert "pipeline_spec" not in r.body
        assert r.body["pipeline_version_reference"] == {"pipeline_id": version["pipeline_id"],
                                                        "pipeline_version_id": version["pipeline_version_id"]}


def test_submit_upload_adds_a_version_when_the_package_changes(server, package, tmp_path, capsys):
    assert cli(["submit", str(package), "--host", server.url, "--upload"], capsys)[0] == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(package.read_text().replace("gs://b/ckpt.pt", "gs://b/other.pt"))
    assert cli(["submit", str(changed), "--host", server.url, "--upload", "--version-name", "v2"], capsys)[0] == 0
    assert sorted(v["display_name"] for v in server.versions.values())[-1] == "v2"
    assert len(server.pipelines) == 1 and len(server.versions) == 2


def test_plain_client_upload_creates_pipeline_with_first_version(server, package):
    conn = kfp_client.connect(host=server.url)
    pipeline = conn.client.upload_pipeline(str(package), pipeline_name="manual")
    (version,) = server.versions.values()
    assert version["pipeline_id"] == pipeline.pipeline_id and version["display_name"] == "manual"
    assert version["pipeline_spec"]["pipelineInfo"]["name"] == "tiny-eval"


def test_namespace_and_service_account_token_file(server, package, tmp_path, capsys):
    token_file = tmp_path / "token"
    token_file.write_text("projected-token\n")
    rc, _, _ = cli(["submit", str(package), "--host", server.url, "--namespace", "team-a",
                    "--sa-token-path", str(token_file), "--experiment", "e"], capsys)
    assert rc == 0
    assert server.requests_to("GET", "/healthz") == [], "a given namespace needs no multi-user probe"
    (listed,) = server.requests_to("GET", "/experiments")
    assert listed.query["namespace"] == ["team-a"]
    (created,) = server.requests_to("POST", "/experiments")
    assert created.body["namespace"] == "team-a"
    assert all(r.headers.get("authorization") == "Bearer projected-token" for r in server.requests)


def test_session_cookies_go_with_every_request_and_are_masked(server, package, capsys, monkeypatch):
    """A Kubeflow Platform login's session cookies (the API behind the platform's ingress, from outside the
    cluster): kfp.Client sends them as the Cookie header of every request (client.py,
    ``kfp_server_api.ApiClient(config, cookie=cookies)``), from $KF_PIPELINES_COOKIES or --cookies."""
    from savflow.common import secrets

    monkeypatch.setenv(kfp_client.COOKIES_ENV, "oauth2_proxy_kubeflow=env-c00kie-value")
    assert cli(["submit", str(package), "--host", server.url, "--experiment", "e"], capsys)[0] == 0
    assert server.requests and all(r.headers.get("cookie") == "oauth2_proxy_kubeflow=env-c00kie-value"
                                   for r in server.requests)
    monkeypatch.delenv(kfp_client.COOKIES_ENV)
    sent = len(server.requests)
    header = "oauth2_proxy_kubeflow=flag-c00kie-value; _csrf=csrf-c00kie-value"
    assert cli(["submit", str(package), "--host", server.url, "--experiment", "e", "--cookies", header],
               capsys)[0] == 0
    assert all(r.headers.get("cookie") == header for r in server.requests[sent:])
    masked = secrets.mask(f"Cookie: {header}; again: flag-c00kie-value, csrf-c00kie-value, env-c00kie-value")
    assert "c00kie" not in masked, masked


def _internal_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA of its own and a certificate it signed for 127.0.0.1: (CA PEM, server certificate PEM, key PEM)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test internal CA")).issuer_name(name("test internal CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(hours=1))
              .not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_an_endpoint_signed_by_an_internal_ca_needs_its_ca_certificate(package, tmp_path, capsys, monkeypatch):
    """kfp.Client trusts its bundled CAs unless given ``ssl_ca_cert`` (client.py ``_load_config``): an
    endpoint whose certificate an internal CA signed is refused (exit 1, the TLS error named) until --ca-cert or
    $KF_PIPELINES_CA_CERT names that CA; a file that is not there is a usage error before anything is sent."""
    ca, cert, key = _internal_ca(tmp_path)
    with KfpFakeServer(tls=(str(cert), str(key))) as tls_server:
        rc, _, err = cli(["submit", str(package), "--host", tls_server.url, "--experiment", "e"], capsys)
        assert rc == 1 and "cannot reach the KFP API" in err and "CERTIFICATE_VERIFY_FAILED" in err, err
        assert not tls_server.requests
        rc, out, err = cli(["submit", str(package), "--host", tls_server.url, "--experiment", "e",
                            "--ca-cert", str(ca)], capsys)
        assert rc == 0, err
        assert tls_server.requests_to("POST", "/runs") and "run_id" in fields(out)
        monkeypatch.setenv(kfp_client.CA_CERT_ENV, str(ca))
        assert cli(["submit", str(package), "--host", tls_server.url, "--experiment", "e"], capsys)[0] == 0
    with pytest.raises(SystemExit) as usage:
        cli(["submit", str(package), "--host", "https://127.0.0.1:9", "--ca-cert", str(tmp_path / "none.pem")],
            capsys)
    assert usage.value.code == 2 and f"--ca-cert: no such file: {tmp_path / 'none.pem'}" in capsys.readouterr().err


def test_profile_namespace_does_not_move_api_discovery(server, package, tmp_path, capsys, monkeypatch):
    """Without --host, kfp.Client finds the API through the kubeconfig's API-server proxy to the ml-pipeline
    service in the namespace given to its constructor (client.py _load_config / _KUBE_PROXY_PATH). That must be
    the KFP install's namespace (--kfp-namespace, default kubeflow), while --namespace (the user's profile)
    only goes into the requests."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "me", "user": {"token": "kube-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}]}))
    # kubernetes reads $KUBECONFIG once, at import; its default location is the same value
    from kubernetes.config import kube_config
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/kfp/context.json of the developer's
    rc, _, err = cli(["submit", str(package), "--namespace", "team-a", "--experiment", "e"], capsys)
    assert rc == 0, err
    assert server.proxied_namespaces and set(server.proxied_namespaces) == {"kubeflow"}, [r.path for r in server.requests]
    (created,) = server.requests_to("POST", "/experiments")
    assert created.body["namespace"] == "team-a"
    (run,) = server.requests_to("POST", "/runs")
    assert server.experiments[run.body["experiment_id"]]["namespace"] == "team-a"

    server.proxied_namespaces.clear()
    rc, _, err = cli(["submit", str(package), "--namespace", "team-a", "--kfp-namespace", "kfp",
                      "--experiment", "e"], capsys)
    assert rc == 0, err
    assert set(server.proxied_namespaces) == {"kfp"}
    assert all(r.query.get("namespace", ["team-a"]) == ["team-a"] for r in server.requests_to("GET", "/experiments"))


def test_submit_api_refusal_is_exit_1_with_the_server_message(server, package, capsys):
    server.experiments["x"] = {"experiment_id": "x", "display_name": "dup", "namespace": ""}
    server.experiments["y"] = {"experiment_id": "y", "display_name": "dup", "namespace": ""}
    rc, _, err = cli(["submit", str(package), "--host", server.url, "--experiment", "dup"], capsys)
    assert rc == 1 and "Multiple experiments" in err and server.runs == {}
    rc, _, err = cli(["schedule", "pause", "does-not-exist", "--host", server.url], capsys)
    assert rc == 1 and "404" in err and "does-not-exist not found" in err


def test_unreachable_endpoint_is_exit_1(package, capsys):
    with KfpFakeServer() as gone:
        url = gone.url
    rc, _, err = cli(["submit", str(package), "--host", url], capsys)
    assert rc == 1 and "cannot reach the KFP API" in err


# --- schedule -------------------------------------------------------------------------------------------------

def schedule_create(server, package, capsys, *extra: str) -> tuple[int, str, str]:
    return cli(["schedule", "create", "--host", server.url, "--pipeline", str(package), "--name", "nightly-eval",
                "--experiment", "sav-evaluate", *extra], capsys)


def test_schedule_create_sends_kfp_cron_and_limits(server, package, capsys):
    rc, out, _ = schedule_create(server, package, capsys, "--cron", "30 2 * * 1-5", "--max-concurrency", "2",
                                 "--start-time", "2030-01-01T01:00:00+02:00", "--end-time", "2031-01-01",
                                 "--param", "shards=16", "--json")
    assert rc == 0
    (req,) = server.requests_to("POST", "/recurringruns")
    body = req.body
    assert body["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * 1-5", "start_time": "2029-12-31T23:00:00Z",
                                                 "end_time": "2031-01-01T00:00:00Z"}}
    assert body["max_concurrency"] == 2
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "nightly-eval"
    assert body["runtime_config"]["parameters"] == {"shards": 16}
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "tiny-eval"
    (exp,) = server.experiments.values()
    assert exp["display_name"] == "sav-evaluate" and body["experiment_id"] == exp["experiment_id"]
    (printed,) = json.loads(out)
    assert printed["cron"] == "0 30 2 * * 1-5" and printed["max_concurrency"] == 2 and printed["no_catchup"]
    assert printed["status"] == "ENABLED" and printed["start_time"].startswith("2029-12-31T23:00:00")


def test_schedule_create_catchup_paused_and_six_field_cron(server, package, capsys):
    rc, _, _ = schedule_create(server, package, capsys, "--cron", "15 0 6 * * SUN", "--catchup", "--paused")
    assert rc == 0
    (req,) = server.requests_to("POST", "/recurringruns")
    assert req.body["trigger"]["cron_schedule"]["cron"] == "15 0 6 * * SUN"
    assert req.body["no_catchup"] is False and req.body["mode"] == "DISABLE"
    assert req.body["max_concurrency"] == 1


@pytest.mark.parametrize("argv, needle", [
    (["--cron", "0 3 * *"], "expected 5 fields"),
    (["--cron", "0 25 * * *"], "hour: 25 is outside 0-23"),
    (["--cron", "0 3 * * 7"], "use 0 for Sunday"),
    (["--cron", "0 3 * * *", "--max-concurrency", "11"], "must be 1-10"),
    (["--cron", "0 3 * * *", "--start-time", "2030-02-01", "--end-time", "2030-01-01"], "not after start"),
    (["--cron", "0 3 * * *", "--start-time", "tomorrow"], "expected ISO 8601"),
])
def test_schedule_create_rejects_bad_input_before_contacting_the_server(server, package, capsys, argv, needle):
    rc, _, err = schedule_create(server, package, capsys, *argv)
    assert rc == 2 and needle in err
    assert server.requests == []


def test_schedule_list_pause_resume_delete(server, package, capsys):
    for i, expr in enumerate(["0 1 * * *", "0 2 * * *", "0 3 * * *"]):
        assert cli(["schedule", "create", "--host", server.url, "--pipeline", str(package), "--name", f"s{i}",
                    "--cron", expr, "--experiment", "a" if i < 2 else "b"], capsys)[0] == 0
    ids = list(server.recurring_runs)

    rc, out, _ = cli(["schedule", "list", "--host", server.url], capsys)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "CRON", "MAX", "CATCHUP", "NAME"]
    assert [line.split()[0] for line in lines[1:]] == ids
    assert lines[1].split()[1:] == ["ENABLED", "0", "0", "1", "*", "*", "*", "1", "no", "s0"]

    rc, out, _ = cli(["schedule", "list", "--host", server.url, "--experiment", "b", "--json"], capsys)
    assert [s["name"] for s in json.loads(out)] == ["s2"]
    exp_b = next(e["experiment_id"] for e in server.experiments.values() if e["display_name"] == "b")
    assert server.requests_to("GET", "/recurringruns")[-1].query["experiment_id"] == [exp_b]

    rc, out, _ = cli(["schedule", "pause", ids[0], "--host", server.url, "--json"], capsys)
    assert rc == 0 and json.loads(out)[0]["status"] == "DISABLED"
    assert len(server.requests_to("POST", f"/recurringruns/{ids[0]}:disable")) == 1
    rc, out, _ = cli(["schedule", "resume", ids[0], "--host", server.url, "--json"], capsys)
    assert rc == 0 and json.loads(out)[0]["status"] == "ENABLED"
    assert len(server.requests_to("POST", f"/recurringruns/{ids[0]}:enable")) == 1

    rc, out, _ = cli(["schedule", "delete", ids[1], "--host", server.url], capsys)
    assert rc == 0 and out.strip() == f"deleted {ids[1]}"
    assert len(server.requests_to("DELETE", f"/recurringruns/{ids[1]}")) == 1
    assert list(server.recurring_runs) == [ids[0], ids[2]]


def test_list_schedules_follows_pages(server, package):
    conn = kfp_client.connect(host=server.url)
    pkg = kfp_client.read_package(package)
    for i in range(5):
        schedules.create_schedule(conn, pkg, {}, name=f"s{i}", cron="@daily")
    listed = schedules.list_schedules(conn, page_size=2)
    assert [s.name for s in listed] == [f"s{i}" for i in range(5)]
    tokens = [r.query.get("page_token", [""])[0] for r in server.requests_to("GET", "/recurringruns")]
    assert tokens == ["", "2", "4"]


# --- cron and times (pure) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, kfp", [
    ("*/15 * * * *", "0 */15 * * * *"), ("0 3 * * 1-5", "0 0 3 * * 1-5"), ("0 0 1 JAN,jul ?", "0 0 0 1 JAN,jul ?"),
    ("  5  4 * * sun ", "0 5 4 * * sun"), ("0 0 9 ? * MON-FRI", "0 0 9 ? * MON-FRI"), ("@Weekly", "@weekly"),
    ("0 8-18/2 * * *", "0 0 8-18/2 * * *"), ("5/10 * * * *", "0 5/10 * * * *"),
])
def test_to_kfp_cron_accepts(expr, kfp):
    assert cron.to_kfp_cron(expr) == kfp


@pytest.mark.parametrize("expr, needle", [
    ("", "got 0"), ("* * * * * * *", "got 7"), ("60 * * * *", "minute: 60"), ("* * 0 * *", "day of month: 0"),
    ("* * * 13 *", "month: 13"), ("* * * FOO *", "'FOO' is not a number"), ("*/0 * * * *", "step 0"),
    ("5-2 * * * *", "runs backwards"), ("? * * * *", "'?' is allowed only"), ("@every 1h", "got 2"),
    ("1,,2 * * * *", "cannot read ''"),
])
def test_to_kfp_cron_rejects(expr, needle):
    with pytest.raises(cron.CronError) as err:
        cron.to_kfp_cron(expr)
    assert needle in str(err.value)


def test_normalize_time():
    assert cron.normalize_time("2030-06-01T12:00:00Z") == "2030-06-01T12:00:00Z"
    assert cron.normalize_time("2030-06-01 12:00") == "2030-06-01T12:00:00Z"
    assert cron.normalize_time("2030-06-01T12:00:00-05:00") == "2030-06-01T17:00:00Z"


# --- compile --------------------------------------------------------------------------------------------------

def test_compile_all_and_staleness(tmp_path):
    (path,) = compile_mod.compile_all(tmp_path, registry=TINY_REGISTRY)
    assert path == tmp_path / "tiny-eval.yaml"
    assert kfp_client.read_package(path).parameter_types == {
        "checkpoint": "STRING", "shards": "NUMBER_INTEGER", "threshold": "NUMBER_DOUBLE", "strict": "BOOLEAN",
        "videos": "LIST"}
    assert compile_mod.is_stale(tmp_path, registry=TINY_REGISTRY) == []
    path.write_text(path.read_text().replace("sav_000001", "sav_000009"))
    assert compile_mod.is_stale(tmp_path, registry=TINY_REGISTRY) == ["tiny-eval"]
    path.unlink()
    assert compile_mod.is_stale(tmp_path, registry=TINY_REGISTRY) == ["tiny-eval"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no temporary files left behind"
    with pytest.raises(ValueError, match="unknown pipeline"):
        compile_mod.compile_all(tmp_path, ["nope"], registry=TINY_REGISTRY)


def test_compile_keeps_a_file_whose_documents_are_unchanged(tmp_path):
    """KFP's header comment prints dict defaults in a per-process order; only the documents decide a rewrite."""
    (path,) = compile_mod.compile_all(tmp_path, registry=TINY_REGISTRY)
    commented = path.read_text().replace("# PIPELINE DEFINITION", "# PIPELINE DEFINITION (header order aside)", 1)
    assert commented != path.read_text()
    path.write_text(commented)
    compile_mod.compile_all(tmp_path, registry=TINY_REGISTRY)
    assert path.read_text() == commented, "same documents: the file is left as it was"
    path.write_text(commented.replace("sav_000001", "sav_000009"))
    compile_mod.compile_all(tmp_path, registry=TINY_REGISTRY)
    assert "sav_000009" not in path.read_text() and "sav_000001" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-eval.yaml"], "no temporary files left behind"


def test_compile_output_is_identical_across_processes(tmp_path, package):
    """Another interpreter, another hash seed: byte-identical YAML, so the committed files can be diffed."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from savflow.pipelines import compile as c
        c.compile_pipeline("tiny-eval", sys.argv[1], {{"tiny-eval": ("test_kfp_verbs", "tiny_eval")}})
    """)
    out = tmp_path / "again.yaml"
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, env={"PYTHONHASHSEED": "12345",
                   "PATH": "/usr/bin:/bin"})
    assert out.read_bytes() == package.read_bytes()


def test_committed_pipelines_are_fresh():
    """Fails when pipelines/compiled/*.yaml differ from the code; fix with `savflow compile`."""
    assert compile_mod.is_stale() == [], "run `savflow compile` and commit pipelines/compiled/"
