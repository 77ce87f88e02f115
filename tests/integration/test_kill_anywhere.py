"""Kill anywhere (issue 12, point 3): each step's command is killed with SIGKILL at seeded random points and run
again; the result must equal an uninterrupted run's, no unit may be done twice, and what readers trust (marked
units) must be whole at the moment of the kill. Training, under torchrun, must resume from its last published
checkpoint, lose at most one save interval of steps, and end with the uninterrupted run's weights.

The command lines are the CLI's, run in subprocesses the way a pod runs them (``savflow.pipelines.cli``).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import uuid
from pathlib import Path

import pytest
import torch

from savflow.common import checkpoints, markers, savformat, storage
from savflow.common import staged as lay
from savflow.common.demo_data import SyntheticSpec, write_raw_train_split, write_staged_train_split, write_val_split
from savflow.common.materialize import materialize

import reliability
from kill_harness import SAVFLOW, delays, differing, kill_after, run, snapshot

TINY = "sam2.1_hiera_tiny128"


def _env() -> dict[str, str]:
    """The environment of the commands: this process's (the emulator's address included), one thread each."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")

STAGE_VOLATILE = {"_done/": ("staged_at",)}
INFER_VOLATILE = {"_done/": ("seconds",)}
EVAL_VOLATILE = {"metrics.json": ("seconds",)}


def _rerun(step: str, cmd: list[str], root: str, want: dict, *, killed: bool, volatile: dict | None = None) -> str:
    """Run the killed command again; it must succeed and leave what the uninterrupted run left (recorded in the
    reliability table either way). Returns its output."""
    again = run(cmd, env=_env())
    identical = not differing(snapshot(root, volatile=volatile), want)
    reliability.kill(step, killed=killed, resumed=again.returncode == 0, identical=identical)
    assert again.returncode == 0, again.output
    assert identical
    return again.output


def _check_marked_units_are_whole(staged: str, tmp: Path) -> set[str]:
    """Every video marked at the kill materializes and matches its marker: a reader never sees half of one."""
    done = markers.done_units(staged)
    assert materialize(staged, tmp / uuid.uuid4().hex, sorted(done)) == sorted(done)
    return done


@pytest.mark.parametrize("layout", ["tar", "dir"])
def test_stage_killed_anywhere(tmp_path: Path, layout: str) -> None:
    source = str(tmp_path / "raw")
    ids = write_raw_train_split(source, SyntheticSpec(num_videos=6, num_frames=48, height=96, width=96,
                                                      num_objects=2, seed=21))
    cmd = [*SAVFLOW, "stage", "--source", source, "--layout", layout, "--workers", "1", "--no-progress", "--masks"]
    reference = run([*cmd, "--dest", str(tmp_path / "ref")], env=_env())
    assert reference.returncode == 0, reference.output
    want = snapshot(str(tmp_path / "ref"), volatile=STAGE_VOLATILE)
    for trial, delay in enumerate(delays(seed=7, trials=3, seconds=reference.seconds)):
        dest = str(tmp_path / f"trial{trial}")
        killed = kill_after([*cmd, "--dest", dest], delay, env=_env())
        done = _check_marked_units_are_whole(dest, tmp_path)
        output = _rerun("stage", [*cmd, "--dest", dest], dest, want, killed=killed, volatile=STAGE_VOLATILE)
        assert f"{len(ids) - len(done)} staged, {len(done)} already complete" in output


def test_materialize_killed_anywhere(tmp_path: Path) -> None:
    staged = str(tmp_path / "staged")
    stage_cmd = [*SAVFLOW, "stage", "--source", str(tmp_path / "raw"), "--dest", staged, "--workers", "1",
                 "--no-progress"]
    write_raw_train_split(str(tmp_path / "raw"), SyntheticSpec(num_videos=8, num_frames=64, height=128, width=128,
                                                               num_objects=1, seed=22))
    assert run(stage_cmd, env=_env()).returncode == 0
    cmd = [*SAVFLOW, "materialize", "--staged", staged, "--workers", "1"]
    reference = run([*cmd, "--local", str(tmp_path / "ref")], env=_env())
    assert reference.returncode == 0, reference.output
    want = snapshot(str(tmp_path / "ref"))
    for trial, delay in enumerate(delays(seed=8, trials=3, seconds=reference.seconds)):
        local = tmp_path / f"trial{trial}"
        killed = kill_after([*cmd, "--local", str(local)], delay, env=_env())
        for video in markers.done_units(str(local)):  # what the local markers vouch for is all there
            for entry in markers.read_marker(str(local), video)["files"]:
                lay.check_data(entry, (local / entry["name"]).read_bytes(), where=str(local))
        _rerun("materialize", [*cmd, "--local", str(local)], str(local), want, killed=killed)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from sam2.build_sam import build_sam2

    from savflow.common.hydra_config import ensure_search_path

    ensure_search_path()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"model": build_sam2(TINY, None, device="cpu").state_dict()}, path)
    return path


def test_infer_and_evaluate_killed_anywhere(gcs_bucket: str, tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Inference into the GCS emulator, then the evaluation of its output, each killed and run again."""
    split = tmp_path / "val"
    write_val_split(str(split), SyntheticSpec(num_videos=4, num_frames=16, num_objects=2, seed=23))
    roots = ["--frames", str(split / savformat.FRAMES_DIR), "--masks", str(split / savformat.MASKS_DIR)]
    infer = [*SAVFLOW, "infer", "--checkpoint", str(tiny_checkpoint), "--model-config", TINY, *roots,
             "--device", "cpu", "--workers", "2"]
    reference = run([*infer, "--output", f"{gcs_bucket}/ref"], env=_env())
    assert reference.returncode == 0, reference.output
    want = snapshot(f"{gcs_bucket}/ref", volatile=INFER_VOLATILE)
    for trial, delay in enumerate(delays(seed=9, trials=2, seconds=reference.seconds, lo=0.5)):
        output = f"{gcs_bucket}/trial{trial}"
        killed = kill_after([*infer, "--output", output], delay, env=_env())
        done = markers.done_units(output)
        for video in done:  # a marked video has all its PNGs, as in the uninterrupted run
            names = [n for n in want if n.startswith(f"{video}/")]
            assert {n: storage.read_bytes(f"{output}/{n}") for n in names} == {n: want[n] for n in names}
        again = _rerun("infer", [*infer, "--output", output], output, want, killed=killed, volatile=INFER_VOLATILE)
        assert f"{4 - len(done)} done, {len(done)} already complete" in again

    evaluate = [*SAVFLOW, "evaluate", "--gt-root", str(split / savformat.MASKS_DIR), "--pred-root",
                f"{gcs_bucket}/ref", "--num-workers", "1", "--quiet"]
    reference = run([*evaluate, "--output", str(tmp_path / "eval-ref")], env=_env())
    assert reference.returncode == 0, reference.output
    want = snapshot(str(tmp_path / "eval-ref"), volatile=EVAL_VOLATILE)
    for trial, delay in enumerate(delays(seed=10, trials=2, seconds=reference.seconds)):
        out = tmp_path / f"eval{trial}"
        killed = kill_after([*evaluate, "--output", str(out)], delay, env=_env())
        if (out / "metrics.json").exists():  # what readers take as complete is complete
            assert snapshot(str(out), volatile=EVAL_VOLATILE)["metrics.json"] == want["metrics.json"]
        _rerun("evaluate", [*evaluate, "--output", str(out)], str(out), want, killed=killed, volatile=EVAL_VOLATILE)


_STEP_RE = re.compile(r"Train Epoch: \[(\d+)\]\[\s*(\d+)/(\d+)\]")


def _last_step(log: str) -> int:
    """The last training step the log shows started (sam2's progress lines, logged every step here)."""
    steps = [int(e) * int(n) + int(i) + 1 for e, i, n in _STEP_RE.findall(log)]
    return max(steps, default=0)


def test_training_under_torchrun_killed_anywhere(gcs_bucket: str, tmp_path: Path) -> None:
    staged = f"{gcs_bucket}/staged"
    write_staged_train_split(staged, SyntheticSpec(num_videos=2, num_frames=16, height=128, width=128,
                                                   num_objects=2, seed=24))
    paths = savformat.split_paths(staged)
    env = dict(_env(), SAVFLOW_SCRATCH=str(tmp_path / "scratch"))
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [*SAVFLOW, "train", "--nproc-per-node", "2", "--config", "sam2.1_tiny128_sav_finetune",
           "--train-frames", paths.frames, "--train-annotations", paths.annotations, "--epochs", "4",
           "--override", "scratch.num_frames=3", "dataset.multiplier=2", "trainer.logging.log_freq=1"]
    reference = run([*cmd, "--experiment-dir", f"{gcs_bucket}/ref"], env=env)
    assert reference.returncode == 0, reference.output[-3000:]
    ref = checkpoints.latest_checkpoint(f"{gcs_bucket}/ref")
    steps_per_epoch = ref.step // ref.epoch
    want = torch.load(storage.download_file(ref.model, tmp_path / "ref.pt"), map_location="cpu")["model"]
    # kill points by step, not by time (the startup's length varies): a random step of epochs 2 to the one
    # before the last, then a random fraction of a step, so that the kill lands in a step or in a checkpoint
    # write and the run must really resume (a kill after the last checkpoint would test nothing)
    rng = random.Random(11)
    seconds_per_step = reference.seconds / ref.step
    for trial in range(3):
        target, delay = rng.randint(steps_per_epoch + 1, ref.step - steps_per_epoch), rng.uniform(0, 0.5)
        exp = f"{gcs_bucket}/trial{trial}"
        log = tmp_path / f"killed{trial}.log"
        killed = kill_after([*cmd, "--experiment-dir", exp], delay * seconds_per_step, env=env, log=log,
                            until=lambda: log.exists() and _last_step(log.read_text()) >= target)
        assert killed
        reached = _last_step(log.read_text())
        saved = checkpoints.latest_checkpoint(exp)
        assert saved is not None and reached >= saved.step and saved.epoch < ref.epoch
        assert reached - saved.step <= steps_per_epoch  # at most one save interval (--save-every 1) lost
        again = run([*cmd, "--experiment-dir", exp], env=env)
        assert again.returncode == 0, again.output[-3000:]
        assert f"resumed at step {saved.step}" in again.output
        final = checkpoints.latest_checkpoint(exp)
        assert (final.step, final.epoch) == (ref.step, ref.epoch)
        got = torch.load(storage.download_file(final.model, tmp_path / f"trial{trial}.pt"), map_location="cpu")
        identical = got["model"].keys() == want.keys() and all(torch.equal(got["model"][k], want[k]) for k in want)
        reliability.kill("train", killed=killed, resumed=True, identical=identical)
        assert identical, "resumed weights differ from the uninterrupted run's"
        shutil.rmtree(tmp_path / "scratch" / "runs", ignore_errors=True)
