"""savflow: fine-tune and evaluate SAM 2 on SA-V as Kubeflow Pipelines.

The import package ``savflow`` is laid out over the repository's ``components/`` folder (one sub-package per
pipeline step, plus ``common``) and ``pipelines/`` (``savflow.pipelines``: pipeline definitions and the CLI).
"""

__version__ = "0.1.0"
