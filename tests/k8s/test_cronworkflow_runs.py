"""Run what we render: the Argo CronWorkflow's steps started as Argo starts them, from resolve to J&F.

The CronWorkflow comes from ``kubectl kustomize k8s/argo``. Each template runs as Argo's executor runs it: a
``script`` template's ``source`` written to a file and passed to its ``command``; a ``container`` template's
``args`` after the image's ENTRYPOINT (``savflow``, docker/Dockerfile); ``{{workflow.parameters.*}}``,
``{{inputs.parameters.*}}``, ``{{steps.*.outputs.parameters.*}}``, ``{{workflow.name}}`` and the
``withSequence`` items substituted; an output parameter read from its ``valueFrom.path``. The workflow's
arguments are given as a user submits them (``argo submit --from cronwf/savflow-evaluate -p ...``): local
paths for the data and the experiment, the tiny model. Changed because this machine has no GPU:
``--device cuda`` -> ``cpu``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from k8s_checks import KUBECTL_MISSING, OVERLAYS, kubectl, kustomize
from savflow.common import savformat, storage
from savflow.common.demo_data import SyntheticSpec, write_val_split
from savflow.common import checkpoints

pytestmark = pytest.mark.skipif(kubectl() is None, reason=KUBECTL_MISSING)
ENTRYPOINT = [str(Path(sys.executable).with_name("savflow"))]
_REF = re.compile(r"\{\{([^}]+)\}\}")


def _substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        key = match.group(1).strip()
        assert key in values, f"unresolved Argo expression {{{{{key}}}}}"
        return values[key]
    return _REF.sub(one, text)


def _env(container: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _substitute(item["value"], values)
    return env


def _run_template(template: dict[str, Any], values: dict[str, str], tmp: Path) -> dict[str, str]:
    """Run one template; returns its output parameters."""
    if "script" in template:
        script = template["script"]
        source = tmp / f"{template['name']}.py"
        source.write_text(_substitute(script["source"], values))
        command = [sys.executable if script["command"] == ["python"] else script["command"][0], str(source)]
        body = script
    else:
        body = template["container"]
        command = ENTRYPOINT + [_substitute(a, values) for a in body["args"]]
        command = ["cpu" if c == "cuda" and command[i - 1] == "--device" else c for i, c in enumerate(command)]
    proc = subprocess.run(command, env=_env(body, values), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{template['name']}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    outputs = {}
    for param in template.get("outputs", {}).get("parameters", []):
        outputs[param["name"]] = Path(param["valueFrom"]["path"]).read_text().strip()
    return outputs


def test_the_cronworkflow_evaluates_the_newest_checkpoint(tmp_path: Path) -> None:
    from savflow.train.init_weights import write_random_init_checkpoint

    (cron,) = [o for o in kustomize(OVERLAYS["argo"]) if o["kind"] == "CronWorkflow"]
    workflow = cron["spec"]["workflowSpec"]
    templates = {t["name"]: t for t in workflow["templates"]}

    staged_val = str(tmp_path / "staged" / "val")
    videos = write_val_split(staged_val, SyntheticSpec(num_videos=2, num_frames=16, height=64, width=64, seed=4))
    exp = str(tmp_path / "exp")
    step_dir = checkpoints.step_dir(exp, 8)
    write_random_init_checkpoint("sam2.1_hiera_tiny128", storage.join(step_dir, checkpoints.MODEL_ONLY))
    storage.write_text(storage.join(checkpoints.checkpoints_root(exp), checkpoints.LATEST),
                       json.dumps(checkpoints.checkpoint_info(exp, 8, 1).__dict__))
    video_list = str(tmp_path / "val.txt")
    storage.write_text(video_list, savformat.format_video_list(videos))

    params = {p["name"]: p["value"] for p in workflow["arguments"]["parameters"]}
    params.update(checkpoint=exp, experiment_dir=exp, staged_val=staged_val, val_video_list=video_list,
                  model_config="sam2.1_hiera_tiny128", infer_shards="2")
    values = {f"workflow.parameters.{k}": v for k, v in params.items()}
    values["workflow.name"] = "savflow-evaluate-1733040000"

    steps = templates[workflow["entrypoint"]]["steps"]
    assert [[s["template"] for s in group] for group in steps] == [["resolve-checkpoint"], ["infer-shard"],
                                                                   ["evaluate"]]
    resolved = _run_template(templates["resolve-checkpoint"], values, tmp_path)
    assert resolved["checkpoint"] == storage.join(step_dir, checkpoints.MODEL_ONLY)
    values["steps.resolve-checkpoint.outputs.parameters.checkpoint"] = resolved["checkpoint"]

    (infer_step,) = steps[1]
    count = int(_substitute(infer_step["withSequence"]["count"], values))
    for item in range(count):
        local = dict(values, item=str(item))
        for arg in infer_step["arguments"]["parameters"]:
            local[f"inputs.parameters.{arg['name']}"] = _substitute(arg["value"], local)
        _run_template(templates["infer-shard"], local, tmp_path)

    _run_template(templates["evaluate"], values, tmp_path)
    metrics = json.loads(storage.read_text(f"{exp}/eval/{values['workflow.name']}/metrics.json"))
    assert metrics["num_videos"] == 2 and 0.0 <= metrics["J&F"] <= 100.0
    assert metrics["protocol"]["skip_first_last"] is True  # --do-not-skip-first-last=false, as Argo substitutes it
    # the infer steps' options, read from their markers (the regression check compares like with like)
    assert set(metrics["protocol"]["inference"]) == {"use_all_masks", "track_later_objects", "score_thresh"}
