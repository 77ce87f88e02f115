"""The one way savflow starts the training worker under ``torchrun`` on this machine.

``savflow train --nproc-per-node N``, ``savflow launch-train --backend local`` and the pipeline's train step with
``train_backend=local`` (``savflow run-local``) all come here: one node, ``--standalone`` rendezvous, an even
share of the cores per process, and an environment without a parent torchrun's variables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from typing import Callable, Mapping, Sequence

from savflow.common.cpus import available_cpus
from savflow.train import distenv

WORKER_MODULE = "savflow.train.worker"


class TorchrunFailed(RuntimeError):
    """torchrun exited non-zero; ``tail`` holds its last lines (its failure summary names the worker's status)."""

    def __init__(self, code: int, tail: str) -> None:
        super().__init__(f"torchrun exited with status {code}")
        self.code, self.tail = code, tail


class TorchrunTimeout(RuntimeError):
    """The run did not finish in time; it was stopped."""


def command(worker_args: Sequence[str], nproc: int, *, module: str = WORKER_MODULE,
            python: str = sys.executable) -> list[str]:
    """``torchrun`` for one node here: ``--standalone`` picks a free rendezvous port itself."""
    return [python, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
            "-m", module, *worker_args]


def environment(nproc: int, extra: Mapping[str, str] = (), base: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without torchrun's own variables (a launcher inside a torchrun must not leak
    its rank into the new one), each process's share of the cores (torchrun would set 1, and a launcher's own
    setting, such as run-local's one thread per pipeline task, is not the workers'), then ``extra``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("PET_") and k not in distenv.TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = str(distenv.threads_per_process(available_cpus(), nproc))
    env.update(extra)
    return env


def run(worker_args: Sequence[str], nproc: int, *, env: Mapping[str, str] = (), module: str = WORKER_MODULE,
        timeout_s: float = 24 * 3600, emit: Callable[[str], None] = print, cwd: str | None = None) -> None:
    """Run the worker under torchrun, streaming each output line to ``emit``; :class:`TorchrunFailed` on a
    non-zero exit. torchrun runs in its own process group, so a timeout, Ctrl-C or whatever the caller's
    signal handler raises stops it and all its workers."""
    cmd = command(worker_args, nproc, module=module)
    emit(f"[local] {' '.join(cmd)}")
    tail: deque[str] = deque(maxlen=40)  # torchrun's failure summary alone is about 20 lines
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            env=environment(nproc, env), cwd=cwd, start_new_session=True)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            emit(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        raise TorchrunTimeout(f"local training did not finish within {timeout_s:.0f} s; stopped it") from None
    except BaseException:
        _stop_group(proc)
        raise
    reader.join(timeout=10)
    if code != 0:
        raise TorchrunFailed(code, "\n".join(tail))


def _stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM torchrun's whole process group (it forwards to workers), SIGKILL what is left after the grace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
