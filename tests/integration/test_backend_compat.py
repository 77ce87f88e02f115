"""sav-evaluate's control flow against what the oldest KFP backend in README.md does with it.

``pipelines/sav_evaluate.py`` runs either the inference fan-out or the given predictions (``dsl.If(pred_root ==
"")`` / ``dsl.Else()``) and returns ``dsl.OneOf(inferred.outputs["Output"], evaluated.outputs["Output"])``. The
SDK (kfp 2.17, ``kfp/compiler/pipeline_spec_builder.py`` ``_single_binary_operation_to_cel_condition``,
``connect_oneof_dag_output``) compiles that to a ``condition-branches-N`` DAG whose tasks carry a CEL
``triggerPolicy.condition`` each (the Else branch is the If's negation, ``!(...)``), one DAG output
``valueFromOneof.parameterSelectors`` with one selector per branch, a root output ``valueFromParameter`` of it,
and in each branch a ``parameterIterator`` (the ParallelFor over the planned evaluations: the single one, or one
per benchmark), the If branch's with the inference shards' ``parameterIterator`` nested in its body.

What the backend does with it, read in kubeflow/pipelines at tags 2.16.0 (e4ebca310f), 2.16.1 (67a73cf809:
argocompiler/dag.go, driver/dag.go, driver/resolve.go and expression.go byte-identical to 2.16.0; the DAG-state,
root-DAG, launcher and argo.go code below the same but for field renames and line shifts), 2.17.0 (4a3592cb2d),
and 2.4.0 (line numbers are 2.16.0's):

* ``backend/src/v2/compiler/argocompiler/dag.go``: ``DAG`` refuses an ``artifactIterator`` ("artifact iterator
  not implemented yet", 2.16.0 l. 68); ``task`` compiles a DAG task (a condition branch) to a DAG driver plus the
  sub-DAG with ``when: <driver condition> != false`` (l. 278), an iterator task through ``iteratorTask`` (l. 359:
  a driver that counts the items, then Argo ``withSequence``), refuses a condition on an importer (l. 340) and
  resolver / custom-job executors.
* ``backend/src/v2/driver/dag.go`` ``DAG``: resolves the task's inputs, then ``expr.Condition(executorInput,
  condition)`` (l. 84); a false condition records the execution ``NotTriggered`` (CANCELED, ``metadata/client.go``
  l. 177); the iterator's items are ``executorInput.inputs.parameter_values[items.inputParameter]`` (l. 138),
  a list or a JSON list string (``driver/util.go`` ``getItems``).
* ``backend/src/v2/expression/expression.go`` ``Condition`` (l. 134): cel-go (v0.25.0 in 2.16's go.mod, v0.27.0 in
  2.17's) with ``pipelinespec.ExecutorInput`` declared as the context proto, so a condition names
  ``inputs.parameter_values['k']`` (a ``google.protobuf.Value``: strings are strings, numbers are doubles), and
  must evaluate to a bool.
* ``backend/src/v2/driver/resolve.go`` ``resolveUpstreamParameters`` / ``GetProducerTask`` (2.16.0 l. 1025-1091):
  a consumer of a DAG output walks ``valueFromParameter`` down to a container; for ``valueFromOneof`` it takes the
  first ``parameterSelectors`` entry whose ``producerSubtask`` (a task *of that DAG*) is COMPLETE or CACHED, else
  fails "processing OneOf: No successful task found". Parameter OneOf came with "feat(backend): implement subdag
  output resolution (#11196)", commit c5b787aacc, first in backend 2.4.0 (``driver/driver.go`` there). *Artifact*
  OneOf (several ``artifactSelectors``) took the last selector, whatever branch ran, until "resolve artifact
  OneOf outputs at runtime (#13436)", 456c72a6c1, first in 2.17.0.
* ``backend/src/v2/metadata/client.go`` ``UpdateDAGExecutionsState`` (2.16.0 l. 746), called only by the launcher
  of a finished container for its immediate parent DAG (``component/launcher_v2.go`` l. 209): a DAG whose children
  include a sub-DAG (a ParallelFor) never becomes COMPLETE on 2.16; recursive propagation is "fix(backend):
  recursive DAG execution state propagation (#13322)", 5d44be17a2, first in 2.17.0. So on 2.16 a task that
  *consumes* our OneOf would fail whichever branch ran (both hold a ParallelFor). Nothing consumes it: it is
  only the pipeline's return value, which no backend driver resolves (``driver/root_dag.go`` records no
  outputs); ``kfp.local`` (``savflow run-local``) reads it. Nor does any task read an output of a sub-DAG (no
  ``dsl.Collected``): each branch's regression check takes the plan's list, a container's output, and waits for
  the ParallelFor through ``dependentTasks`` only, as the evaluate step waits for the inference ParallelFor.
* ``backend/src/v2/compiler/argocompiler/argo.go`` (l. 91-101): root inputs not given get their default, so the
  condition's ``pred_root`` is ``''`` when unset.

The conditions are evaluated here by cel-python (``celpy``), a CEL implementation of its own.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from savflow.pipelines.compile import COMPILED_DIR

ROOT = Path(__file__).resolve().parents[2]
Version = tuple[int, int]

PARAMETER_ONEOF_SINCE: Version = (2, 4)       # c5b787aacc, #11196
ARTIFACT_ONEOF_SINCE: Version = (2, 17)       # 456c72a6c1, #13436
RECURSIVE_DAG_STATE_SINCE: Version = (2, 17)  # 5d44be17a2, #13322


def _supported_backends() -> list[Version]:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| Kubeflow Pipelines backend |")]
    assert len(rows) == 1, "README.md: one 'Kubeflow Pipelines backend' row in the platform table"
    cell = rows[0].split("|")[2]
    versions = [tuple(int(p) for p in v.split(".")) for v in re.findall(r"\d+\.\d+", cell)]
    assert versions, cell
    return sorted(versions)


MIN_BACKEND: Version = _supported_backends()[0]


@pytest.fixture(scope="module")
def spec() -> dict:
    pipeline, _platform = yaml.safe_load_all((COMPILED_DIR / "sav-evaluate.yaml").read_text())
    return pipeline


def _dags(spec: dict) -> Iterator[tuple[str, dict]]:
    """(component name, dag) for the root and every DAG component."""
    yield "root", spec["root"]
    for name, component in spec["components"].items():
        if "dag" in component:
            yield name, component


def _component(spec: dict, task: dict) -> dict:
    return spec["components"][task["componentRef"]["name"]]


def _contains_sub_dag(spec: dict, component: dict) -> bool:
    return any("dag" in _component(spec, t) for t in component["dag"]["tasks"].values())


def _leaf_of(spec: dict, component: dict, key: str) -> str:
    """Follow a DAG output parameter's ``valueFromParameter`` down to the container task that produces it, as
    ``resolveUpstreamParameters`` does; returns its executor label."""
    for _ in range(32):
        source = component["dag"]["outputs"]["parameters"][key]
        assert "valueFromParameter" in source, f"{key}: nested OneOf / non-parameter source {source}"
        task = component["dag"]["tasks"][source["valueFromParameter"]["producerSubtask"]]
        key = source["valueFromParameter"]["outputParameterKey"]
        assert "parameterIterator" not in task, f"{key}: from a ParallelFor (a Collected list), not one value"
        component = _component(spec, task)
        assert key in component["outputDefinitions"]["parameters"], key
        if "executorLabel" in component:
            return component["executorLabel"]
    raise AssertionError("DAG outputs nest too deep")


# --- the conditions, evaluated by cel-python (the driver evaluates them with cel-go) ------------------------------

_PARAMETER = re.compile(r"inputs\.parameter_values\[(?:'([^']*)'|\"([^\"]*)\")\]")


def referenced_parameters(condition: str) -> set[str]:
    """The keys of ``inputs.parameter_values[...]`` a condition reads."""
    return {a or b for a, b in _PARAMETER.findall(condition)}


def eval_cel(condition: str, parameter_values: dict[str, Any]) -> Any:
    """The condition's value with ``inputs.parameter_values`` bound, as the DAG driver evaluates it (a type
    mismatch or a missing key raises, as cel-go's "no such overload" / "no such key" fail the task there)."""
    env = celpy.Environment()
    program = env.program(env.compile(condition))
    result = program.evaluate({"inputs": celpy.json_to_cel({"parameter_values": parameter_values})})
    if isinstance(result, celpy.CELEvalError):
        raise TypeError(f"{condition}: {result}")
    return bool(result) if isinstance(result, celpy.celtypes.BoolType) else result


_SAMPLES = {"STRING": ["", "gs://bucket/exp/pred"], "BOOLEAN": [True, False],
            "NUMBER_INTEGER": [0.0, 1.0, 7.0], "NUMBER_DOUBLE": [0.0, 0.5, 2.0]}


def _as_value(parameter_type: str, value: Any) -> Any:
    """What a ``google.protobuf.Value`` of that type is in CEL: numbers are doubles."""
    return float(value) if parameter_type.startswith("NUMBER") else value


def _conditional_tasks(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for dag_name, component in _dags(spec):
        for task_name, task in component["dag"]["tasks"].items():
            if task.get("triggerPolicy", {}).get("condition"):
                yield dag_name, task_name, task


def _condition_inputs(spec: dict, task: dict) -> dict[str, str]:
    """name -> parameterType of each parameter the condition reads, as the DAG driver resolves it."""
    condition = task["triggerPolicy"]["condition"]
    definitions = _component(spec, task)["inputDefinitions"]["parameters"]
    names = referenced_parameters(condition)
    assert names, f"{condition}: reads no input"
    for name in names:
        assert name in task["inputs"]["parameters"], f"{name}: not an input of the task; the driver finds no key"
        assert name in definitions, f"{name}: not in the branch component's inputDefinitions"
    return {name: definitions[name]["parameterType"] for name in names}


# --- the tests ----------------------------------------------------------------------------------------------------

def test_readme_backend_floor_resolves_the_oneof_kinds_the_ir_uses(spec: dict) -> None:
    oneofs = [(n, k, o) for n, c in _dags(spec) for k, o in c["dag"].get("outputs", {}).get("parameters", {}).items()
              if "valueFromOneof" in o]
    artifact_oneofs = [(n, k) for n, c in _dags(spec)
                       for k, o in c["dag"].get("outputs", {}).get("artifacts", {}).items()
                       if len(o.get("artifactSelectors", [])) > 1]
    assert oneofs, "sav-evaluate returns a dsl.OneOf: the IR has a valueFromOneof"
    assert MIN_BACKEND >= PARAMETER_ONEOF_SINCE, f"backend {MIN_BACKEND} predates parameter OneOf"
    if MIN_BACKEND < ARTIFACT_ONEOF_SINCE:
        assert not artifact_oneofs, (f"artifact OneOf {artifact_oneofs}: backend {MIN_BACKEND} takes the last "
                                     f"selector whichever branch ran; needs {ARTIFACT_ONEOF_SINCE}+")


def test_oneof_selectors_are_the_branches_of_their_condition_dag(spec: dict) -> None:
    """The shape ``GetProducerTask`` reads: each selector's producer a conditional task of the same DAG, one per
    branch, each output reaching a container through ``valueFromParameter`` only."""
    for dag_name, component in _dags(spec):
        for key, output in component["dag"].get("outputs", {}).get("parameters", {}).items():
            if "valueFromOneof" not in output:
                continue
            assert set(output) == {"valueFromOneof"}, output
            selectors = output["valueFromOneof"]["parameterSelectors"]
            tasks = component["dag"]["tasks"]
            producers = [s["producerSubtask"] for s in selectors]
            assert len(selectors) >= 2 and len(set(producers)) == len(producers), selectors
            assert set(producers) == set(tasks), f"{dag_name}: one selector per branch task, {producers}"
            for selector in selectors:
                assert set(selector) == {"producerSubtask", "outputParameterKey"}, selector
                task = tasks[selector["producerSubtask"]]
                assert task.get("triggerPolicy", {}).get("condition"), f"{selector}: not a conditional branch"
                assert "parameterIterator" not in task, selector
                branch = _component(spec, task)
                assert "dag" in branch, selector
                label = _leaf_of(spec, branch, selector["outputParameterKey"])
                assert label.startswith("exec-"), label
            declared = component["outputDefinitions"]["parameters"][key]["parameterType"]
            assert declared == "STRING", (key, declared)


def test_oneof_goes_to_the_root_output_only_and_no_task_reads_it_on_a_backend_without_dag_state(spec: dict) -> None:
    root_outputs = spec["root"]["dag"]["outputs"]["parameters"]
    assert root_outputs["Output"] == {"valueFromParameter": {
        "outputParameterKey": "pipelinechannel--condition-branches-1-oneof-1",
        "producerSubtask": "condition-branches-1"}}
    for dag_name, component in _dags(spec):
        for key, output in component["dag"].get("outputs", {}).get("parameters", {}).items():
            if "valueFromOneof" not in output:
                continue
            branches = [component["dag"]["tasks"][s["producerSubtask"]]
                        for s in output["valueFromOneof"]["parameterSelectors"]]
            holds_sub_dag = any(_contains_sub_dag(spec, _component(spec, b)) for b in branches)
            consumers = [(d, t) for d, c in _dags(spec) for t, task in c["dag"]["tasks"].items()
                         for p in task.get("inputs", {}).get("parameters", {}).values()
                         if p.get("taskOutputParameter", {}).get("outputParameterKey") == key]
            if holds_sub_dag and MIN_BACKEND < RECURSIVE_DAG_STATE_SINCE:
                assert not consumers, (
                    f"{consumers} read {key} from {dag_name}: a branch holds a ParallelFor, whose state backend "
                    f"{MIN_BACKEND} never propagates, so the OneOf finds no COMPLETE branch; needs "
                    f"{RECURSIVE_DAG_STATE_SINCE}+ or no sub-DAG in the branch")


def test_conditions_are_cel_the_driver_evaluates_to_exactly_one_branch(spec: dict) -> None:
    conditional = list(_conditional_tasks(spec))
    assert {t for _, t, _ in conditional} == {"condition-4", "condition-5"}, conditional
    by_dag: dict[str, list[tuple[str, dict]]] = {}
    for dag_name, task_name, task in conditional:
        assert "dag" in _component(spec, task), "a condition on a container/importer is not what we compile"
        by_dag.setdefault(dag_name, []).append((task_name, task))
    for dag_name, branches in by_dag.items():
        types: dict[str, str] = {}
        for _, task in branches:
            types.update(_condition_inputs(spec, task))
        assert types == {"pipelinechannel--pred_root": "STRING"}, types
        names = sorted(types)
        for combo in itertools.product(*(_SAMPLES[types[n]] for n in names)):
            values = {n: _as_value(types[n], v) for n, v in zip(names, combo)}
            taken = [name for name, task in branches
                     if eval_cel(task["triggerPolicy"]["condition"], values) is True]
            assert len(taken) == 1, f"{dag_name} with {values}: branches taken {taken}"
            expected = "condition-4" if values["pipelinechannel--pred_root"] == "" else "condition-5"
            assert taken == [expected], (values, taken)


def test_condition_inputs_have_a_value_when_the_run_omits_them(spec: dict) -> None:
    """``argo.go`` gives an omitted root input its default; one with neither default nor value would reach the
    condition as null (a string compare on null fails the DAG driver)."""
    for dag_name, _task_name, task in _conditional_tasks(spec):
        for name in _condition_inputs(spec, task):
            source = task["inputs"]["parameters"][name]
            # follow componentInputParameter up to the root: condition-branches-1 <- root input
            hops = 0
            while "componentInputParameter" in source and hops < 16:
                hops += 1
                parent_input = source["componentInputParameter"]
                holder = next(((dn, t) for dn, c in _dags(spec) for t in c["dag"]["tasks"].values()
                               if t["componentRef"]["name"] == dag_name), None)
                if holder is None:
                    break
                dag_name, source = holder[0], holder[1]["inputs"]["parameters"][parent_input]
            root_input = spec["root"]["inputDefinitions"]["parameters"][source["componentInputParameter"]]
            assert "defaultValue" in root_input or not root_input.get("isOptional"), (name, root_input)
    assert spec["root"]["inputDefinitions"]["parameters"]["pred_root"]["defaultValue"] == ""


def test_the_parallel_fors_in_the_branches_are_parameter_iterators_the_driver_fans_out(spec: dict) -> None:
    """The evaluations' ParallelFor in each branch, and the inference shards' nested in the If branch's."""
    iterators = [(d, n, t) for d, c in _dags(spec) for n, t in c["dag"]["tasks"].items() if "parameterIterator" in t]
    assert sorted((d, n) for d, n, _ in iterators) == [
        ("comp-condition-4", "for-loop-2"), ("comp-condition-5", "for-loop-6"), ("comp-for-loop-2", "for-loop-3")], \
        iterators
    for dag_name, name, task in iterators:
        iterator = task["parameterIterator"]
        items = iterator["items"]
        assert set(items) == {"inputParameter"}, items
        source = task["inputs"]["parameters"][items["inputParameter"]]  # dag.go l. 138 looks it up here
        producer = spec["components"][dag_name]["dag"]["tasks"][source["taskOutputParameter"]["producerTask"]]
        produced = _component(spec, producer)["outputDefinitions"]["parameters"][
            source["taskOutputParameter"]["outputParameterKey"]]
        assert produced["parameterType"] == "LIST", produced  # getItems: a list (or a JSON list string)
        loop = _component(spec, task)
        assert "dag" in loop and iterator["itemInput"] in loop["inputDefinitions"]["parameters"]
        used = [p for t in loop["dag"]["tasks"].values() for p in t["inputs"]["parameters"].values()
                if p.get("componentInputParameter") == iterator["itemInput"]]
        assert used, "the loop body reads its item"
        parallelism = task.get("iteratorPolicy", {}).get("parallelismLimit", 0)
        assert parallelism >= 0  # argo.go: > 0 becomes the loop template's parallelism, 0 none


def test_no_task_reads_an_output_of_a_sub_dag(spec: dict) -> None:
    """Every task input from another task comes from a container (the plan's list, the checkpoint), never from a
    ParallelFor or condition DAG: a OneOf's resolution needs the DAG states above, and a Collected list's is
    not among the backend facts this module rests on."""
    for dag_name, component in _dags(spec):
        tasks = component["dag"]["tasks"]
        for name, task in tasks.items():
            for key, source in task.get("inputs", {}).get("parameters", {}).items():
                producer = source.get("taskOutputParameter", {}).get("producerTask")
                if producer is not None:
                    assert "executorLabel" in _component(spec, tasks[producer]), (dag_name, name, key, producer)


def test_nothing_the_argo_compiler_refuses(spec: dict) -> None:
    executors = spec["deploymentSpec"]["executors"]
    for label, executor in executors.items():
        assert set(executor) <= {"container", "importer"}, (label, set(executor))  # no resolver, no customJob
    for dag_name, component in _dags(spec):
        tasks = component["dag"]["tasks"]
        assert any(t.get("triggerPolicy", {}).get("strategy") != "ALL_UPSTREAM_TASKS_COMPLETED"
                   for t in tasks.values()), dag_name
        for name, task in tasks.items():
            assert "artifactIterator" not in task, (dag_name, name)
            target = _component(spec, task)
            assert ("dag" in target) != ("executorLabel" in target), (dag_name, name)
            if "executorLabel" in target and "importer" in executors[target["executorLabel"]]:
                assert not task.get("triggerPolicy", {}).get("condition"), (dag_name, name)
            for dep in task.get("dependentTasks", []):
                assert dep in tasks, f"{dag_name}/{name} depends on {dep}, not a task of its DAG"


def test_sdk_pin_and_ir_version(spec: dict) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"kfp>=2.17,<2.18"' in pyproject, "kfp pin changed: re-check the OneOf / condition encoding above"
    assert re.fullmatch(r"kfp-2\.17\.\d+", spec["sdkVersion"]), spec["sdkVersion"]
    assert spec["schemaVersion"] == "2.1.0"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.mark.parametrize("name", ["sav-evaluate", "sav-finetune"])
def test_the_run_id_is_only_ever_a_whole_input_value(name: str) -> None:
    """The driver replaces ``{{$.pipeline_job_uuid}}`` only as an input's whole value (``driver/resolve.go``,
    ``resolveInputParameter``, 2.16.0 and 2.17.0) and the launcher's ``getPlaceholders`` substitutes no run
    placeholders inside strings: embedded in a path it would reach the pod literally, one folder for every run
    (``savflow.pipelines.run_folders``)."""
    text = (COMPILED_DIR / f"{name}.yaml").read_text()
    embedded = [line.strip() for line in text.splitlines()
                if "{{$.pipeline_job" in line and line.split(":", 1)[-1].strip().strip("'\"") not in
                ("{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}", "{{$.pipeline_job_resource_name}}")]
    assert not embedded, embedded
