"""``savflow run-local --data``: the import into the work directory, the held-out split, the parameters the
pipeline gets, and the refusals (another folder, the demo's work directory, options without ``--data``).
The whole run is tests/integration/test_run_local_data.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from savflow.common import storage
from savflow.common.demo_data import SyntheticSpec
from savflow.importers import samples
from savflow.pipelines import local_data, run_local
from savflow.pipelines.local_data import OwnData, split_videos

SPEC = SyntheticSpec(num_videos=3, num_frames=6, height=16, width=16, num_objects=1, seed=1)


def test_the_last_videos_by_name_are_held_out() -> None:
    names = [f"v{i:02d}" for i in range(11)]
    assert split_videos(list(reversed(names)), None) == (names[:9], names[9:])  # a fifth, by name
    assert split_videos(names[:3], None) == (names[:2], names[2:3])  # at least one
    assert split_videos(names[:3], 2) == (names[:1], names[1:3])
    for videos, holdout in ((names[:1], None), (names[:3], 3), (names[:3], 0)):
        with pytest.raises(ValueError):
            split_videos(videos, holdout)


@pytest.fixture
def davis(tmp_path: Path) -> Path:
    samples.write_davis(str(tmp_path / "DAVIS"), SPEC, appears_at=0)
    return tmp_path / "DAVIS"


@pytest.fixture
def no_weights(monkeypatch) -> None:
    """The random-init checkpoint is a file here (writing one builds the model)."""
    import savflow.train.init_weights as init_weights

    monkeypatch.setattr(init_weights, "write_random_init_checkpoint",
                        lambda model, uri, seed=0: storage.write_bytes(uri, b"weights") or uri)


def test_parameters_of_an_imported_folder(davis: Path, tmp_path: Path, no_weights, monkeypatch) -> None:
    """The import is both raw splits; the lists choose the videos; the import's stride goes to training (first,
    the user's overrides after it) and every frame is staged; the pipeline runs with what it is given."""
    ran = {}
    monkeypatch.setattr(run_local, "run_pipeline", lambda name, params, root, log_dir=None: ran.update(params) or
                        SimpleNamespace(output=0.0))
    work = tmp_path / "work"
    run = run_local.run_local("sav-finetune", work, {"train_overrides": ["scratch.base_lr=1e-4"]}, demo=None,
                              data=OwnData(str(davis), "davis"))
    imported = str((work / "imported").resolve())
    assert ran == run.params and ran["raw_train"] == ran["raw_val"] == imported
    assert ran["sample_rate"] == 1 and ran["train_config"] == run_local.TINY_TRAIN
    assert ran["train_overrides"][-1] == "scratch.base_lr=1e-4" and "ann_every=1" in ran["train_overrides"][0]
    assert storage.read_text(ran["train_video_list"]).split() == SPEC.video_ids()[:2]
    assert storage.read_text(ran["val_video_list"]).split() == SPEC.video_ids()[2:]
    assert ran["experiment_dir"] == str(work.resolve() / "exp" / "data")
    # the recurring evaluation finds this experiment, not the demo's
    (work / "staged" / "val").mkdir(parents=True, exist_ok=True)
    assert run_local.demo_params("sav-evaluate", work.resolve(), run_local.DemoSize())["experiment_dir"] == \
        ran["experiment_dir"]


def test_an_import_is_reused_and_another_folder_refused(davis: Path, tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "work"
    first = local_data.import_once(work, OwnData(str(davis), "davis"))
    monkeypatch.setattr("savflow.importers.run.import_dataset", lambda *a, **k: pytest.fail("imported again"))
    assert local_data.import_once(work, OwnData(str(davis), "davis")) == first
    with pytest.raises(ValueError, match="holds an import of"):
        local_data.import_once(work, OwnData(str(tmp_path / "other"), "davis"))
    with pytest.raises(ValueError, match="your own imported data"):
        run_local.prepare_demo(work, run_local.DemoSize())


def test_the_demo_s_work_directory_is_refused(davis: Path, tmp_path: Path) -> None:
    storage.write_text(str(tmp_path / "raw" / run_local.DEMO_MARKER), "{}")
    with pytest.raises(ValueError, match="demo's data"):
        local_data.prepare_own_data(tmp_path, OwnData(str(davis), "davis"))


@pytest.mark.parametrize("argv", [["--data", "DAVIS"], ["--format", "davis"], ["--holdout", "2"],
                                  ["--data", "DAVIS", "--format", "davis", "--no-demo"]])
def test_own_data_options_go_together(argv: list[str], capsys) -> None:
    from savflow.pipelines.cli import build_parser
    from savflow.pipelines.local_cli import run

    assert run(build_parser(declare={"run-local"}).parse_args(["run-local", *argv])) == 2
    assert capsys.readouterr().err.startswith("savflow run-local: error: ")
