"""Each run's own folder (``{experiment_dir}/eval/{run id}``), made by a task rather than by an f-string.

The run id placeholder ``{{$.pipeline_job_uuid}}`` is replaced by the KFP driver only where it is an input's
whole value (kubeflow/pipelines ``backend/src/v2/driver/resolve.go``, ``resolveInputParameter``: the
``case "{{$.pipeline_job_uuid}}"`` of a runtime constant, 2.16.0 and 2.17.0); the launcher substitutes only
input and output placeholders inside a longer string (``backend/src/v2/component/launcher_v2.go``,
``getPlaceholders``). ``f"{experiment_dir}/eval/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}"`` therefore reaches the pod
as ``.../eval/{{$.pipeline_job_uuid}}`` on a cluster, the same folder for every run, although ``kfp.local``
substitutes it. So the id goes in whole to :func:`run_folder`, whose output later tasks extend (``f"{out}/pred"``
is an input placeholder in a longer string, which the launcher does substitute).
``tests/integration/test_backend_compat.py`` checks the compiled pipelines hold no embedded run id.
"""


from kfp import dsl

from savflow.common.deployment import DEFAULT_IMAGE
from savflow.pipelines.task_settings import TaskSettings

RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def run_folder(parent: str, kind: str, run_id: str) -> str:
    """``{parent}/{kind}/{run_id}``: this run's folder of that kind under the experiment."""
    from savflow.common.storage import join

    return join(parent, kind, run_id)


def this_run_folder(ts: TaskSettings, image, parent, kind: str) -> dsl.PipelineTask:
    """The task whose output is this run's ``kind`` folder under ``parent``."""
    task = run_folder(parent=parent, kind=kind, run_id=RUN_ID)
    ts.name(task, f"{kind}-folder")
    return ts.uncached(ts.image(task, image))
