"""The pods a Training Operator PyTorchJob or a Trainer TrainJob turns into, with the environment the operator
injects, so a test can start their containers' commands on this machine as the cluster would.

From the upstream source (kubeflow/trainer at tags v1.8.1 and v1.9.4, identical there, and v2.2.0 / v2.3.0):

* PyTorchJob, ``pkg/controller.v1/pytorch/envvar.go`` ``setPodEnv``: appended to *every* container's env, after
  the user's (so the operator's value wins): ``PYTHONUNBUFFERED=1``; with a Master replica ``MASTER_PORT`` and
  ``PET_MASTER_PORT`` (the Master's ``pytorch`` container port named ``pytorchjob-port``, default 23456),
  ``MASTER_ADDR`` and ``PET_MASTER_ADDR`` = ``{job}-master-0`` (a headless Service per replica),
  ``WORLD_SIZE`` = all replicas x int(nprocPerNode) (1 when not an integer), ``RANK`` and ``PET_NODE_RANK`` =
  the node rank (master 0, worker i -> i + 1); ``PET_NPROC_PER_NODE`` = ``spec.nprocPerNode`` (default
  "auto"); ``PET_NNODES`` = all replicas. Pods are ``{job}-master-0`` and ``{job}-worker-{i}``.
* TrainJob, ``pkg/runtime/framework/plugins/torch/torch.go`` ``EnforceMLPolicy`` on the ``node`` container:
  ``trainer.env``, then ``PET_NNODES`` = numNodes, ``PET_NPROC_PER_NODE`` = numProcPerNode (an int from v2.2;
  without it "auto" with a GPU, else the CPU count), ``PET_NODE_RANK`` = the Job completion index (fieldRef on
  the ``batch.kubernetes.io/job-completion-index`` annotation), ``PET_MASTER_ADDR`` =
  ``{job}-node-0-0.{job}``, ``PET_MASTER_PORT`` = 29500 (``constants.ContainerTrainerPort``).

Cluster DNS names are resolved to 127.0.0.1 here (what the headless Services give a pod), and the fixed ports
are moved to a free one, the only changes made to what the operator would set.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PYTORCHJOB_DEFAULT_PORT = 23456
TRAINER_PORT = 29500


@dataclass
class Pod:
    name: str
    command: list[str]
    env: dict[str, str]
    mounts: list[str] = field(default_factory=list)


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def pytorchjob_pods(job: dict[str, Any]) -> list[Pod]:
    name, spec = job["metadata"]["name"], job["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    total = sum(r["replicas"] for r in replicas.values())
    nproc = spec.get("nprocPerNode", "auto")
    world = total * (int(nproc) if nproc.isdigit() else 1)
    master = next(c for c in replicas["Master"]["template"]["spec"]["containers"] if c["name"] == "pytorch")
    port = next((p["containerPort"] for p in master.get("ports", []) if p["name"] == "pytorchjob-port"),
                PYTORCHJOB_DEFAULT_PORT)
    pods = []
    for rtype in ("Master", "Worker"):
        if rtype not in replicas:
            continue
        for index in range(replicas[rtype]["replicas"]):
            rank = index if rtype == "Master" else index + 1
            for container in replicas[rtype]["template"]["spec"]["containers"]:
                env = _container_env(container)
                env.update({"PYTHONUNBUFFERED": "1", "MASTER_PORT": str(port), "PET_MASTER_PORT": str(port),
                            "MASTER_ADDR": f"{name}-master-0", "PET_MASTER_ADDR": f"{name}-master-0",
                            "WORLD_SIZE": str(world), "RANK": str(rank), "PET_NODE_RANK": str(rank),
                            "PET_NPROC_PER_NODE": nproc, "PET_NNODES": str(total)})
                pods.append(Pod(f"{name}-{rtype.lower()}-{index}", list(container["command"]), env,
                                [m["mountPath"] for m in container.get("volumeMounts", [])]))
    return pods


def trainjob_pods(job: dict[str, Any]) -> list[Pod]:
    name, trainer = job["metadata"]["name"], job["spec"]["trainer"]
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    (container,) = node["template"]["spec"]["template"]["spec"]["containers"]
    pods = []
    for index in range(trainer["numNodes"]):
        env = _container_env(trainer)
        env.update({"PET_NNODES": str(trainer["numNodes"]),
                    "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", os.cpu_count() or 1)),
                    "PET_NODE_RANK": str(index), "PET_MASTER_ADDR": f"{name}-node-0-0.{name}",
                    "PET_MASTER_PORT": str(TRAINER_PORT)})
        pods.append(Pod(f"{name}-node-0-{index}", list(trainer["command"]), env,
                        [m["mountPath"] for m in container.get("volumeMounts", [])]))
    return pods


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def localize(pods: list[Pod], volumes: Path, extra_env: dict[str, str]) -> list[Pod]:
    """The pods as processes here: cluster names -> 127.0.0.1, one free port for the rendezvous, each pod's
    volume mounts (other than /tmp and /dev/shm, which exist here) -> its own folder, ``extra_env`` added (the
    bucket mapping), ``torchrun`` from this Python environment."""
    port = str(free_port())
    out = []
    for pod in pods:
        env = dict(pod.env)
        for key in ("MASTER_ADDR", "PET_MASTER_ADDR"):
            if key in env:
                env[key] = "127.0.0.1"
        for key in ("MASTER_PORT", "PET_MASTER_PORT"):
            if key in env:
                env[key] = port
        for mount in pod.mounts:
            if mount in ("/tmp", "/dev/shm"):
                continue
            local = volumes / pod.name / mount.strip("/").replace("/", "_")
            local.mkdir(parents=True, exist_ok=True)
            env = {k: str(local) if v == mount else v for k, v in env.items()}
        env.update(extra_env)
        command = list(pod.command)
        if command[0] == "torchrun":
            command[0] = str(Path(sys.executable).with_name("torchrun"))
        out.append(Pod(pod.name, command, env, pod.mounts))
    return out


def run_pods(pods: list[Pod], logs: Path, timeout_s: float) -> dict[str, tuple[int, str]]:
    """Start every pod's command at once (as the pods of a job start together) and wait for all of them;
    returns each pod's exit status and log. The environment is the pod's alone plus a PATH, as in a container."""
    logs.mkdir(parents=True, exist_ok=True)
    base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    procs = {}
    for pod in pods:
        fh = open(logs / f"{pod.name}.log", "w")
        procs[pod.name] = (subprocess.Popen(pod.command, env={**base, **pod.env}, stdout=fh,
                                            stderr=subprocess.STDOUT, start_new_session=True), fh)
    results = {}
    def kill_all() -> None:
        for proc, _ in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout_s, kill_all)
    timer.start()
    try:
        for name, (proc, fh) in procs.items():
            code = proc.wait()
            fh.close()
            results[name] = (code, (logs / f"{name}.log").read_text())
    finally:
        timer.cancel()
    return results
