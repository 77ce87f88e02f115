"""`savflow runs list|get|metrics|cancel|retry` and `savflow schedule update` against the local KFP v2 REST server.

As in test_kfp_verbs: the real kfp.Client talks HTTP to :mod:`kfp_fake_server`, whose run endpoints were checked
against kfp_server_api/api/run_service_api.py (see its docstring); the tests assert on what the client sent and
on what the CLI prints and exits with. The scores of ``runs metrics`` come from metrics.json files written here
under a local experiment directory, where the pipelines' evaluate tasks write them. (No ``from __future__ import
annotations``: kfp reads the component's annotations as types.)
"""

import json

import pytest
from kfp import dsl
from kfp_fake_server import KfpFakeServer
import test_kfp_verbs
from test_kfp_verbs import cli, fields

from savflow.pipelines import compile as compile_mod
from savflow.pipelines import kfp_client, runs, schedules

# test_kfp_verbs' fixtures: its environment clean-up (autouse), the fake server, the tiny-eval package
_clean_kfp_env, server, package = test_kfp_verbs._clean_kfp_env, test_kfp_verbs.server, test_kfp_verbs.package

@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def _step(experiment_dir: str, shards: int) -> str:
    return f"{experiment_dir} {shards}"


@dsl.pipeline(name="sav-finetune", description="A stand-in named like sav-finetune, for its eval layout.")
def tiny_finetune(experiment_dir: str, shards: int = 2):
    _step(experiment_dir=experiment_dir, shards=shards)


@dsl.pipeline(name="sav-evaluate", description="A stand-in named like sav-evaluate, for its eval layout.")
def tiny_evaluate(experiment_dir: str, benchmarks: list = []):
    _step(experiment_dir=experiment_dir, shards=1)


@pytest.fixture(scope="module")
def finetune_package(tmp_path_factory):
    path = compile_mod.compile_pipeline("sav-finetune", tmp_path_factory.mktemp("ft") / "sav-finetune.yaml",
                                        {"sav-finetune": (__name__, "tiny_finetune")})
    return kfp_client.read_package(path)


def _submit(server, pkg, params, experiment="Default", name=None):
    conn = kfp_client.connect(host=server.url)
    return kfp_client.submit(conn, pkg, params, experiment=experiment, run_name=name).run_id


def _metrics_file(path, jf, j, f, videos=3):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps({"J&F": jf, "J": j, "F": f, "num_videos": videos,
                                                   "num_objects": 2 * videos, "per_video": {}}))


# --- runs list / get --------------------------------------------------------------------------------------------

def test_runs_list_by_experiment_and_state_newest_first(server, package, capsys):
    pkg = kfp_client.read_package(package)
    ids = [_submit(server, pkg, {}, experiment=e, name=f"r{i}") for i, e in enumerate(["a", "a", "a", "b"])]
    server.finish(ids[0], "FAILED")
    server.finish(ids[1], "SUCCEEDED")
    server.finish(ids[2], "FAILED")

    rc, out, err = cli(["runs", "list", "--host", server.url, "--experiment", "a", "--state", "failed"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "CREATED", "NAME"]
    assert [line.split()[0] for line in lines[1:]] == [ids[2], ids[0]]
    assert all(line.split()[1] == "FAILED" for line in lines[1:])
    req = server.requests_to("GET", "/runs")[-1]
    exp_a = next(e["experiment_id"] for e in server.experiments.values() if e["display_name"] == "a")
    assert req.query["experiment_id"] == [exp_a] and req.query["sort_by"] == ["created_at desc"]
    assert json.loads(req.query["filter"][0]) == {
        "predicates": [{"operation": 1, "key": "state", "stringValue": "FAILED"}]}

    rc, out, _ = cli(["runs", "list", "--host", server.url, "--json", "--limit", "3"], capsys)
    assert rc == 0
    assert [r["run_id"] for r in json.loads(out)] == ids[::-1][:3]
    assert "filter" not in server.requests_to("GET", "/runs")[-1].query


def test_list_runs_follows_pages_and_limit(server, package):
    pkg = kfp_client.read_package(package)
    ids = [_submit(server, pkg, {}) for _ in range(5)]
    conn = kfp_client.connect(host=server.url)
    assert [r.run_id for r in runs.list_runs(conn, limit=0, page_size=2)] == ids[::-1]
    tokens = [r.query.get("page_token", [""])[0] for r in server.requests_to("GET", "/runs")]
    assert tokens == ["", "2", "4"]
    assert [r.run_id for r in runs.list_runs(conn, limit=3, page_size=2)] == ids[::-1][:3]


def test_runs_list_bad_state_or_experiment_is_exit_2(server, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(["runs", "list", "--host", server.url, "--state", "DONE"], capsys)
    assert exc.value.code == 2 and "invalid choice: 'DONE'" in capsys.readouterr().err
    rc, _, err = cli(["runs", "list", "--host", server.url, "--experiment", "nope"], capsys)
    assert rc == 2 and "nope" in err and len(err.strip().splitlines()) == 1


def test_runs_get_shows_state_parameters_tasks_and_the_uploaded_pipeline(server, package, capsys):
    conn = kfp_client.connect(host=server.url)
    run_id = kfp_client.submit(conn, kfp_client.read_package(package), {"shards": 3}, upload=True).run_id
    server.finish(run_id, "SUCCEEDED", [("preflight", "SUCCEEDED"), ("echo", "SUCCEEDED")])
    rc, out, err = cli(["runs", "get", run_id, "--host", server.url], capsys)
    assert rc == 0, err
    info = fields(out)
    assert info["run_id"] == run_id and info["state"] == "SUCCEEDED" and info["pipeline"] == "tiny-eval"
    assert info["url"] == f"{server.url}/#/runs/details/{run_id}" and info["finished_at"]
    assert "  shards: 3" in out.splitlines() and "  echo: SUCCEEDED" in out.splitlines()
    (version,) = server.versions.values()
    assert server.requests_to("GET", f"/pipelines/{version['pipeline_id']}/versions/"
                                     f"{version['pipeline_version_id']}"), "the pipeline named from its version"
    rc, out, _ = cli(["runs", "get", run_id, "--host", server.url, "--json"], capsys)
    assert json.loads(out)["parameters"] == {"shards": 3}


def test_unknown_run_and_unreachable_endpoint_are_exit_2(server, capsys):
    for action in ("get", "metrics", "cancel", "retry"):
        rc, out, err = cli(["runs", action, "no-such-run", "--host", server.url], capsys)
        assert rc == 2 and out == "" and "404" in err and "run no-such-run not found" in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    with KfpFakeServer() as gone:
        url = gone.url
    rc, _, err = cli(["runs", "list", "--host", url], capsys)
    assert rc == 2 and "cannot reach the KFP API" in err


# --- runs metrics ---------------------------------------------------------------------------------------------

def test_runs_metrics_per_evaluate_task_of_sav_finetune(server, finetune_package, tmp_path, capsys):
    exp = tmp_path / "exp"
    run_id = _submit(server, finetune_package, {"experiment_dir": str(exp)})
    _metrics_file(exp / "eval" / run_id / "base", 61.234, 58.0, 64.468)
    _metrics_file(exp / "eval" / run_id / "finetuned", 70.5, 68.25, 72.75)
    server.finish(run_id, "SUCCEEDED", [("evaluate (starting checkpoint)", "SUCCEEDED"),
                                        ("evaluate (fine-tuned)", "SUCCEEDED")])
    rc, out, err = cli(["runs", "metrics", run_id, "--host", server.url], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"run {run_id} (sav-finetune, SUCCEEDED): " + server.runs[run_id]["display_name"]
    assert lines[1].split()[:6] == ["TASK", "STATE", "J&F", "J", "F", "VIDEOS"]
    assert lines[2].split()[:8] == ["evaluate", "(starting", "checkpoint)", "SUCCEEDED", "61.2", "58.0", "64.5", "3"]
    assert lines[3].split()[:7] == ["evaluate", "(fine-tuned)", "SUCCEEDED", "70.5", "68.2", "72.8", "3"]
    assert lines[3].endswith(str(exp / "eval" / run_id / "finetuned" / "metrics.json"))

    rc, out, _ = cli(["runs", "metrics", run_id, "--host", server.url, "--json"], capsys)
    tasks = json.loads(out)["tasks"]
    assert [(t["folder"], t["J&F"], t["J"], t["F"]) for t in tasks] == [("base", 61.234, 58.0, 64.468),
                                                                       ("finetuned", 70.5, 68.25, 72.75)]


def test_runs_metrics_of_sav_evaluate_with_benchmarks_per_benchmark(server, tmp_path, capsys):
    """One folder per benchmark (``{name}/``), all written by the one evaluate task of the ParallelFor; without
    ``benchmarks`` the run folder itself."""
    path = compile_mod.compile_pipeline("sav-evaluate", tmp_path / "sav-evaluate.yaml",
                                        {"sav-evaluate": (__name__, "tiny_evaluate")})
    pkg = kfp_client.read_package(path)
    exp = tmp_path / "exp"
    run_id = _submit(server, pkg, {"experiment_dir": str(exp), "benchmarks": [
        {"name": "sav", "staged_val": "gs://b/sav"}, {"name": "d17", "staged_val": "gs://b/d", "benchmark": "davis"}]})
    _metrics_file(exp / "eval" / run_id / "sav", 61.0, 58.0, 64.0)
    (exp / "eval" / run_id / "pred" / "sav").mkdir(parents=True)
    server.finish(run_id, "FAILED", [("evaluate (evaluation)", "FAILED")])
    rc, out, _ = cli(["runs", "metrics", run_id, "--host", server.url, "--json"], capsys)
    assert rc == 1
    tasks = json.loads(out)["tasks"]
    assert [(t["folder"], t["task"], t["J&F"], t["error"]) for t in tasks] == [
        ("sav", "evaluate (evaluation)", 61.0, None), ("d17", "evaluate (evaluation)", None, "no metrics.json")]
    single = _submit(server, pkg, {"experiment_dir": str(exp)})
    _metrics_file(exp / "eval" / single, 70.0, 69.0, 71.0)
    server.finish(single, "SUCCEEDED")
    rc, out, _ = cli(["runs", "metrics", single, "--host", server.url, "--json"], capsys)
    assert rc == 0 and [(t["folder"], t["J&F"]) for t in json.loads(out)["tasks"]] == [("", 70.0)]


def test_runs_metrics_of_a_failed_run_lists_what_is_missing_with_exit_1(server, finetune_package, tmp_path,
                                                                        capsys):
    exp = tmp_path / "exp"
    run_id = _submit(server, finetune_package, {"experiment_dir": str(exp)})
    _metrics_file(exp / "eval" / run_id / "base", 61.0, 58.0, 64.0)
    server.finish(run_id, "FAILED", [("evaluate (starting checkpoint)", "SUCCEEDED"), ("train", "FAILED")])
    rc, out, _ = cli(["runs", "metrics", run_id, "--host", server.url], capsys)
    assert rc == 1
    base, tuned = out.splitlines()[2:4]
    assert "61.0" in base and tuned.split()[2:7] == ["-", "-", "-", "-", "-"]
    assert tuned.endswith("finetuned/metrics.json (no metrics.json)")


def test_runs_metrics_of_another_pipeline_finds_its_metrics_files(server, package, tmp_path, capsys):
    exp = tmp_path / "exp"
    run_id = _submit(server, kfp_client.read_package(package), {"experiment_dir": str(exp)})
    _metrics_file(exp / "eval" / run_id, 80.0, 79.0, 81.0)
    (exp / "eval" / run_id / "pred").mkdir()
    server.finish(run_id, "SUCCEEDED")
    rc, out, _ = cli(["runs", "metrics", run_id, "--host", server.url, "--json"], capsys)
    assert rc == 0
    (task,) = json.loads(out)["tasks"]
    assert task["task"] == "evaluate (evaluation)" and task["J&F"] == 80.0 and task["state"] is None

    empty = _submit(server, kfp_client.read_package(package), {"experiment_dir": str(exp)})
    server.finish(empty, "SUCCEEDED")
    rc, out, _ = cli(["runs", "metrics", empty, "--host", server.url], capsys)
    assert rc == 1 and f"no evaluation metrics under {exp}/eval/{empty}" in out


def test_runs_metrics_without_an_experiment_dir_is_exit_2(server, package, capsys):
    run_id = _submit(server, kfp_client.read_package(package), {"shards": 1})
    rc, _, err = cli(["runs", "metrics", run_id, "--host", server.url], capsys)
    assert rc == 2 and "has no experiment_dir parameter" in err


# --- runs cancel / retry --------------------------------------------------------------------------------------

def test_runs_cancel_terminates_once_and_waits_for_canceled(server, package, capsys):
    server.final_state = None
    run_id = _submit(server, kfp_client.read_package(package), {})
    rc, out, err = cli(["runs", "cancel", run_id, "--host", server.url, "--wait", "--poll-interval", "0.01"],
                       capsys)
    assert rc == 0, err
    # the fake, like the persistence agent, reports CANCELED once the terminated run is looked at again
    assert out.splitlines() == [f"canceling {run_id}: now CANCELED", "state: CANCELED"]
    assert len(server.requests_to("POST", f"/runs/{run_id}:terminate")) == 1
    rc, out, _ = cli(["runs", "cancel", run_id, "--host", server.url], capsys)
    assert rc == 0 and out.strip() == f"{run_id} is already CANCELED"
    assert len(server.requests_to("POST", f"/runs/{run_id}:terminate")) == 1

    done = _submit(server, kfp_client.read_package(package), {})
    server.finish(done, "SUCCEEDED")
    rc, _, err = cli(["runs", "cancel", done, "--host", server.url], capsys)
    assert rc == 2 and "already ended SUCCEEDED" in err
    assert not server.requests_to("POST", f"/runs/{done}:terminate")


def test_fake_terminate_and_retry_refuse_like_the_server(server, package):
    """What the fake answers when asked directly (kfp.Client, no checks of ours first)."""
    import kfp_server_api

    conn = kfp_client.connect(host=server.url)
    run_id = _submit(server, kfp_client.read_package(package), {})
    server.finish(run_id, "SUCCEEDED")
    with pytest.raises(kfp_server_api.ApiException) as exc:
        conn.client.terminate_run(run_id)
    assert exc.value.status == 400 and "Row not found" in exc.value.body
    with pytest.raises(kfp_server_api.ApiException) as exc:
        conn.client.runs.run_service_retry_run(run_id=run_id)
    assert exc.value.status == 500 and "must be Failed/Error to retry" in exc.value.body


def test_runs_retry_reruns_a_failed_run_in_place(server, package, capsys):
    run_id = _submit(server, kfp_client.read_package(package), {})
    server.finish(run_id, "FAILED")
    server.final_state, server.polls_to_finish = "SUCCEEDED", 2
    rc, out, err = cli(["runs", "retry", run_id, "--host", server.url, "--wait", "--poll-interval", "0.01"],
                       capsys)
    assert rc == 0, err
    assert out.splitlines()[0] == f"retrying {run_id}: now RUNNING" and out.splitlines()[-1] == "state: SUCCEEDED"
    assert len(server.requests_to("POST", f"/runs/{run_id}:retry")) == 1
    assert [h["state"] for h in server.runs[run_id]["state_history"]][-3:] == ["FAILED", "RUNNING", "SUCCEEDED"]

    server.finish(run_id, "FAILED")
    server.final_state = "FAILED"
    rc, out, _ = cli(["runs", "retry", run_id, "--host", server.url, "--wait", "--poll-interval", "0.01"], capsys)
    assert rc == 1 and out.splitlines()[-1] == "state: FAILED"

    server.final_state = None  # from now on it stays RUNNING
    rc, _, err = cli(["runs", "retry", run_id, "--host", server.url], capsys)  # FAILED again: retried
    assert rc == 0
    rc, _, err = cli(["runs", "retry", run_id, "--host", server.url], capsys)  # now RUNNING
    assert rc == 2 and "only FAILED or CANCELED runs can be retried" in err
    assert len(server.requests_to("POST", f"/runs/{run_id}:retry")) == 3


# --- schedule update ------------------------------------------------------------------------------------------

def _create(server, package, capsys, *extra):
    rc, out, err = cli(["schedule", "create", "--host", server.url, "--pipeline", str(package), "--name", "nightly",
                        "--experiment", "evals", "--json", *extra], capsys)
    assert rc == 0, err
    return json.loads(out)[0]["recurring_run_id"]


def test_schedule_update_replaces_keeping_the_settings(server, package, capsys):
    old = _create(server, package, capsys, "--cron", "30 2 * * 1-5", "--max-concurrency", "2", "--catchup",
                  "--start-time", "2030-01-01", "--end-time", "2031-01-01", "--description", "d",
                  "--param", "shards=4", "--param", "checkpoint=gs://b/c.pt", "--service-account", "sa")
    before = len(server.requests)
    rc, out, err = cli(["schedule", "update", old, "--host", server.url, "--cron", "0 4 * * *",
                        "--param", "shards=8"], capsys)
    assert rc == 0, err
    (new,) = server.recurring_runs
    assert new != old and out.splitlines()[0] == f"replaced {old} by {new}"
    steps = [(r.method, r.path.rsplit("/", 1)[-1]) for r in server.requests[before:] if r.method != "GET"]
    assert steps == [("POST", "recurringruns"), ("DELETE", old), ("POST", f"{new}:enable")]

    (first, second) = server.requests_to("POST", "/recurringruns")
    created = second.body
    assert created["mode"] == "DISABLE", "created disabled, enabled after the old one is gone"
    assert created["display_name"] == "nightly" and created["experiment_id"] == first.body["experiment_id"]
    assert created["trigger"] == {"cron_schedule": {"cron": "0 0 4 * * *", "start_time": "2030-01-01T00:00:00Z",
                                                    "end_time": "2031-01-01T00:00:00Z"}}
    assert created["max_concurrency"] == 2 and created["no_catchup"] is False
    assert created["description"] == "d" and created["service_account"] == "sa"
    assert created["runtime_config"]["parameters"] == {"shards": 8, "checkpoint": "gs://b/c.pt"}
    assert created["pipeline_spec"] == first.body["pipeline_spec"]
    assert server.recurring_runs[new]["status"] == "ENABLED"
    assert out.splitlines()[2].split()[:2] == [new, "ENABLED"]


def test_schedule_update_keeps_a_pipeline_version_and_a_paused_state(server, package, capsys):
    old = _create(server, package, capsys, "--cron", "@daily", "--upload", "--paused")
    ref = server.recurring_runs[old]["pipeline_version_reference"]
    rc, out, err = cli(["schedule", "update", old, "--host", server.url, "--max-concurrency", "3", "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    new = result["recurring_run_id"]
    assert result["replaced"] == old and result["status"] == "DISABLED" and result["max_concurrency"] == 3
    body = server.requests_to("POST", "/recurringruns")[-1].body
    assert body["pipeline_version_reference"] == ref and "pipeline_spec" not in body
    assert body["trigger"]["cron_schedule"]["cron"] == "@daily"
    assert not server.requests_to("POST", f"/recurringruns/{new}:enable")

    # typed by the version's declared inputs, checked before anything changes
    rc, _, err = cli(["schedule", "update", new, "--host", server.url, "--param", "shards=two"], capsys)
    assert rc == 2 and "shards" in err and list(server.recurring_runs) == [new]
    rc, _, err = cli(["schedule", "update", new, "--host", server.url, "--param", "shard=2"], capsys)
    assert rc == 2 and "unknown pipeline parameter(s) shard" in err


def test_schedule_update_with_a_new_pipeline_drops_parameters_it_lacks(server, package, finetune_package,
                                                                       capsys):
    old = _create(server, package, capsys, "--cron", "@daily", "--param", "shards=4", "--param", "strict=true")
    rc, out, err = cli(["schedule", "update", old, "--host", server.url, "--pipeline", str(finetune_package.path),
                        "--param", "experiment_dir=gs://b/exp"], capsys)
    assert rc == 0, err
    assert "dropped parameters the new pipeline does not declare: strict" in out
    body = server.requests_to("POST", "/recurringruns")[-1].body
    assert body["runtime_config"]["parameters"] == {"shards": 4, "experiment_dir": "gs://b/exp"}
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "sav-finetune"


def test_schedule_update_rejects_bad_input_before_contacting_the_server(server, package, capsys):
    old = _create(server, package, capsys, "--cron", "@daily")
    before = len(server.requests)
    for argv, needle in [(["--cron", "0 25 * * *"], "hour: 25"), (["--max-concurrency", "0"], "must be 1-10"),
                         (["--start-time", "soon"], "expected ISO 8601"), (["--upload"], "go with --pipeline")]:
        rc, _, err = cli(["schedule", "update", old, "--host", server.url, *argv], capsys)
        assert rc == 2 and needle in err, err
    assert len(server.requests) == before
    rc, _, err = cli(["schedule", "update", "nope", "--host", server.url, "--cron", "@daily"], capsys)
    assert rc == 1 and "404" in err and list(server.recurring_runs) == [old]


def test_schedule_update_that_cannot_delete_the_old_one_says_both_exist(server, package, capsys, monkeypatch):
    from kfp_fake_server import ApiError

    old = _create(server, package, capsys, "--cron", "@daily")

    def refuse(ident):
        raise ApiError(503, 14, "unavailable")

    monkeypatch.setattr(server, "_delete_recurring_run", refuse)
    rc, _, err = cli(["schedule", "update", old, "--host", server.url, "--cron", "@hourly"], capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    new = next(i for i in server.recurring_runs if i != old)
    assert f"created {new} (disabled) to replace {old}" in err and "both exist" in err
    assert server.recurring_runs[new]["status"] == "DISABLED" and server.recurring_runs[old]["status"] == "ENABLED"


def test_update_schedule_keeps_a_periodic_trigger(server, package):
    conn = kfp_client.connect(host=server.url)
    with kfp_client.quiet():
        rr = conn.client.create_recurring_run(experiment_id=kfp_client.experiment_id_of(conn, "e"), job_name="p",
                                              interval_second=3600, pipeline_package_path=str(package),
                                              max_concurrency=1)
    result = schedules.update_schedule(conn, rr.recurring_run_id, max_concurrency=4)
    trigger = server.requests_to("POST", "/recurringruns")[-1].body["trigger"]
    assert list(trigger) == ["periodic_schedule"] and int(trigger["periodic_schedule"]["interval_second"]) == 3600
    assert result.schedule.max_concurrency == 4 and result.schedule.cron is None
