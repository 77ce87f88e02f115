"""savflow: fine-tune and evaluate SAM 2 on SA-V as Kubeflow Pipelines.

The import package ``savflow`` lives in ``components/savflow/`` (one sub-package per pipeline step, plus
``common`` and ``configs``), except ``savflow.pipelines``, which is the repository's ``pipelines/`` folder
(pipeline definitions and the CLI); see the README's Layout section.
"""

__version__ = "0.1.0"
