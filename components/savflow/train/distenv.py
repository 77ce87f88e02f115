"""The process's place in a training job, read from the variables ``torchrun`` sets.

The sam2 trainer reads ``RANK``/``LOCAL_RANK`` itself and calls ``init_process_group`` with the ``env://``
method, so a worker must find these set. Under ``torchrun`` (locally, or per pod of a PyTorchJob/TrainJob where
the operator's ``PET_*`` variables drive ``torchrun``) they are; a plain ``python -m savflow.train.worker`` is a
job of one process, for which :func:`single_process_env` fills them in.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Mapping, MutableMapping

REQUIRED = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Everything torchrun sets for each process it starts; a value from elsewhere would be overwritten or, worse,
# believed (the job specs refuse them in user env, the local runner drops a parent's).
TORCHRUN_ENV = frozenset({*REQUIRED, "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE"})


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global and node-local rank and the sizes of both groups."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    master_addr: str
    master_port: int

    @property
    def is_primary(self) -> bool:
        """Rank 0 of the whole job: the one that writes checkpoints and metrics."""
        return self.rank == 0

    @property
    def is_node_leader(self) -> bool:
        """Local rank 0: the one that fetches this node's copy of the data."""
        return self.local_rank == 0


def read_dist_env(environ: Mapping[str, str]) -> DistEnv:
    """Parse the torchrun variables; a missing or malformed one is an error naming it."""
    missing = [k for k in REQUIRED if not environ.get(k)]
    if missing:
        raise ValueError(f"distributed environment incomplete: {', '.join(missing)} not set "
                         "(run under torchrun, or without any of them for a single process)")

    def _int(key: str, default: str | None = None) -> int:
        value = environ.get(key, default)
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"distributed environment: {key}={value!r} is not an integer") from exc

    env = DistEnv(
        rank=_int("RANK"), local_rank=_int("LOCAL_RANK"), world_size=_int("WORLD_SIZE"),
        local_world_size=_int("LOCAL_WORLD_SIZE", environ.get("WORLD_SIZE")),
        master_addr=environ["MASTER_ADDR"], master_port=_int("MASTER_PORT"),
    )
    if not (0 <= env.rank < env.world_size and 0 <= env.local_rank < env.local_world_size <= env.world_size):
        raise ValueError(f"distributed environment inconsistent: {env}")
    return env


def single_process_env(environ: MutableMapping[str, str]) -> None:
    """Make a lone process a job of one: set the torchrun variables unless all are already there.

    Partially set variables are left alone so that :func:`read_dist_env` reports them rather than this function
    guessing the rest."""
    if any(environ.get(k) for k in REQUIRED):
        return
    environ.update({
        "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
    })


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def threads_per_process(cpu_count: int, local_world_size: int) -> int:
    """Intra-op threads for each of ``local_world_size`` processes sharing ``cpu_count`` cores: an even share,
    at least one (torchrun's default of 1 leaves most cores idle when few processes train on CPU)."""
    return max(1, cpu_count // max(1, local_world_size))
