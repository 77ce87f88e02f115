"""``savflow run-local --data DIR --format davis``: your own videos through the whole sav-finetune pipeline.

A DAVIS-layout folder (JPEG frames, a palette PNG on every frame) is imported into the work directory, the
pipeline's first step validates the training videos against the tiny config (one too short for its clips: left
out with ``drop_invalid``, or the run stops before anything is staged), then stage -> train (1 epoch) -> infer
-> evaluate run on the import with its recorded stride (every frame annotated), under kfp.local.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from savflow.common import storage
from savflow.common.demo_data import SyntheticSpec
from savflow.importers import samples
from savflow.pipelines.cli import main as savflow_main
from savflow.pipelines.local_cli import run as cli_run
from savflow.pipelines.run_local import eval_dirs, run_local
from savflow.pipelines.local_data import OwnData

pytestmark = pytest.mark.slow

SHORT = SyntheticSpec(num_videos=1, num_frames=6, height=64, width=64, num_objects=2, seed=3, first_index=1)
VIDEOS = SyntheticSpec(num_videos=3, num_frames=16, height=64, width=64, num_objects=2, seed=4, first_index=2)


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    """Three usable videos and one with fewer frames than the tiny config's 8-frame clips, which sorts first
    (it is a training video: the last one by name is held out)."""
    root = tmp_path_factory.mktemp("davis") / "DAVIS"
    samples.write_davis(str(root), SHORT, appears_at=0)
    samples.write_davis(str(root), VIDEOS)
    return root


def test_an_invalid_training_video_stops_the_run_before_staging(davis: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(RuntimeError, match="validate-train"):
        run_local("sav-finetune", tmp_path, {}, demo=None, data=OwnData(str(davis), "davis", holdout=1, epochs=1))
    tasks = {p.name for run in (tmp_path / "kfp").iterdir() for p in run.iterdir()}
    assert not any(t.startswith(("stage", "train", "infer")) for t in tasks), tasks
    [report] = (tmp_path / "exp" / "data" / "validate").glob("*/report.json")
    assert json.loads(report.read_text())["invalid"] == SHORT.video_ids()
    assert not list((tmp_path / "staged").rglob("*.jpg")), "preflight probes the folder; nothing is staged"
    # the console (issue 15.1): the failing task, its last lines, the path of its whole log
    out = capsys.readouterr().out
    assert "validate-train: FAILURE after" in out and "the whole log: " in out, out
    [log] = (tmp_path / "logs").glob("*/*-validate-train.log")
    assert f"the whole log: {log}" in out


def test_own_videos_fine_tune_and_evaluate(davis: Path, tmp_path: Path, capsys) -> None:
    args = ["run-local", "--workdir", str(tmp_path), "--data", str(davis), "--format", "davis", "--holdout", "1",
            "--epochs", "1", "--param", "drop_invalid=true"]
    from savflow.pipelines.cli import build_parser

    assert cli_run(build_parser(declare={"run-local"}).parse_args(args)) == 0
    out = capsys.readouterr().out
    assert "sav-finetune finished" in out and "finetuned  J&F" in out, out
    assert any(line.startswith("sav-finetune finished") for line in out.splitlines()), "kfp.local's print left"
    # the console (issue 15.1): a line per task start and end and the long tasks' progress, not their output
    assert "train: done in" in out and "tasks  validate-train: started" in out, out
    assert len(out.splitlines()) < 120 and "Train Epoch" not in out, out
    [logs] = (tmp_path / "logs").iterdir()
    assert any("Train Epoch" in p.read_text() for p in logs.glob("*-train.log"))
    exp = str(tmp_path / "exp" / "data")
    scores = {d.rsplit("/", 1)[-1]: json.loads(storage.read_text(storage.join(d, "metrics.json")))
              for d in eval_dirs(exp, 0)}
    assert set(scores) == {"base", "finetuned"}
    held_out = VIDEOS.video_ids()[-1:]
    assert scores["finetuned"]["num_videos"] == 1 and scores["finetuned"]["num_objects"] == 2
    # the imported annotations (every frame) were staged with the val split: J&F by SA-V size bucket
    assert sum(b["objects"] for b in scores["finetuned"]["per_bucket"].values()) == 2
    [valid] = (tmp_path / "exp" / "data" / "validate").glob("*/file_list.txt")
    assert valid.read_text().split() == VIDEOS.video_ids()[:-1]  # the short video left out, the held-out one apart
    assert (tmp_path / "staged" / "train" / "file_list.txt").read_text().split() == VIDEOS.video_ids()[:-1]
    assert (tmp_path / "staged" / "val" / "file_list.txt").read_text().split() == held_out
    metrics = json.loads((tmp_path / "exp" / "data" / "train_metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["steps"] == 2 * 4  # 2 videos x multiplier 4 x 1 epoch
    # both evaluations under the DAVIS protocol (sav-finetune's benchmark parameter, from --format davis)
    for name in ("base", "finetuned"):
        assert scores[name]["benchmark"] == "davis", scores[name]
        assert scores[name]["protocol"]["inference"]["track_later_objects"] is False
    # and the number is the one `savflow evaluate --benchmark davis` gives for those predictions
    [finetuned] = [d for d in eval_dirs(exp, 0) if d.endswith("/finetuned")]
    gt, pred = str(tmp_path / "staged" / "val" / "Annotations_6fps"), storage.join(finetuned, "pred")
    davis_out = tmp_path / "davis-eval"
    assert savflow_main(["evaluate", "--gt-root", gt, "--pred-root", pred, "--output", str(davis_out),
                         "--benchmark", "davis", "--workers", "1", "--quiet"]) == 0
    davis_scores = json.loads((davis_out / "metrics.json").read_text())
    assert davis_scores["benchmark"] == "davis" and davis_scores["protocol"]["inference"]["track_later_objects"] is False
    assert davis_scores["J&F"] == pytest.approx(scores["finetuned"]["J&F"])
