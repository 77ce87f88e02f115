"""The preflight's rules on plain facts, and its KFP component's body on local folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from savflow.preflight import checks
from savflow.preflight.checks import ERROR, OK, Access


def _node(gpus: int, **labels: str) -> dict:
    return {"metadata": {"labels": labels}, "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}}}


def test_gpu_nodes_rules() -> None:
    a100 = {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}
    nodes = [_node(8, **a100), _node(4, **a100), _node(0)]
    ok = checks.check_gpu_nodes(nodes, node_selector=a100, gpus_per_node=4, nodes_wanted=2)
    assert ok.status == OK and "2 GPU nodes" in ok.message
    short = checks.check_gpu_nodes(nodes, node_selector=a100, gpus_per_node=8, nodes_wanted=2)
    assert short.status == ERROR and "1 of the 2" in short.message
    none = checks.check_gpu_nodes([_node(0)], node_selector={}, gpus_per_node=1, nodes_wanted=1)
    assert none.status == ERROR and "device plugin" in none.fix


def test_access_rules() -> None:
    needs = checks.pipeline_needs("trainjob")
    assert Access("create", "trainer.kubeflow.org", "trainjobs", why="the train step runs its job") in needs
    assert [f.status for f in checks.check_access("sa", needs, {a: True for a in needs})] == [OK]
    denied = checks.check_access("sa", needs, {**{a: True for a in needs}, needs[-1]: False})
    assert denied[0].status == ERROR and needs[-1].describe() in denied[0].message
    assert checks.pipeline_needs("none") == checks.pipeline_needs("local")[:2]


def test_exit_code_fails_only_on_errors() -> None:
    assert checks.exit_code([checks.Finding("a", OK, ""), checks.Finding("b", checks.WARN, "")]) == 0
    assert checks.exit_code([checks.Finding("a", ERROR, "")]) == 1


def test_component_body_probes_the_local_roots(tmp_path: Path, capsys) -> None:
    from savflow.preflight.component import preflight

    text = preflight.python_func(namespace="ns", backend="local", nodes=1, gpus_per_node=0, node_selector={},
                                 queue_name="", experiment_dir=str(tmp_path / "exp"), staged_val=str(tmp_path / "v"),
                                 staged_train="", cluster=False)
    assert "2 checks: the run can work" in text
    assert (tmp_path / "exp" / "_savflow_doctor").is_dir() and not list((tmp_path / "exp" / "_savflow_doctor").iterdir())


def test_component_body_fails_the_run_on_a_problem(tmp_path: Path) -> None:
    from savflow.preflight.component import preflight

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RuntimeError, match="preflight failed: ERROR storage"):
        preflight.python_func(namespace="ns", backend="local", nodes=1, gpus_per_node=0, node_selector={},
                              queue_name="", experiment_dir=str(blocker), staged_val=str(tmp_path / "v"),
                              cluster=False)
