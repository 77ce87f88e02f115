"""How many CPUs this process may use: the pod's cpuset (``sched_getaffinity``), not the node's core count.

A pod on a 96-core node with a limit of 8 CPUs that starts 96 workers runs them all on its 8; every default
worker count in savflow (staging encoders, evaluation processes, training threads) comes from here.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
