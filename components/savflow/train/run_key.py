"""What a training run is made of, recorded with every checkpoint it publishes: a later run continues an
experiment's checkpoints only when it is the same run (restarted after preemption, or asked for more epochs).

The key holds the config name, the overrides, a digest of the composed config (so an edited config file or a
changed override counts), the training data's identity (:class:`savflow.train.data.TrainDataSource`) and the
starting weights' identity. Left out are the settings a continuation may change without being another run:
the number of data epochs (``--epochs``: train longer) and the data-loader processes (speed only).
"""

from __future__ import annotations

from typing import Any, Sequence

from savflow.common import provenance, storage
from savflow.train.data import TrainDataSource

# Config keys a continuation of the same run may change.
CONTINUATION_KEYS = ("scratch.num_epochs", "scratch.num_train_workers")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def weights_identity(uri: str | None) -> dict[str, Any] | None:
    """The starting weights as an object identity (URI, size, version); None for random initialisation."""
    if not uri:
        return None
    stat = storage.stat(uri)
    return {"uri": uri, "size": stat.size, "version": stat.version}


def run_key(*, config_name: str, overrides: Sequence[str], cfg: Any, data: TrainDataSource,
            init_weights: str | None) -> dict[str, Any]:
    """The key of a run of ``config_name`` composed with ``overrides`` into ``cfg`` (before it is pointed at
    local files), on ``data``, from ``init_weights``."""
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=False)
    for dotted in CONTINUATION_KEYS:
        section, _, name = dotted.partition(".")
        if isinstance(container.get(section), dict):
            container[section].pop(name, None)
    return {"format": provenance.TRAIN_FORMAT, "config": config_name,
            "overrides": [o for o in overrides if _override_key(o) not in CONTINUATION_KEYS],
            "config_digest": provenance.digest(container), "data": data.identity(),
            "init_weights": weights_identity(init_weights)}
