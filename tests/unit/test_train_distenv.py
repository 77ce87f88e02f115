"""Reading the torchrun environment, and the single-process defaults."""

from __future__ import annotations

import pytest

from savflow.train import distenv

TORCHRUN = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456"}


def test_reads_what_torchrun_sets():
    env = distenv.read_dist_env(TORCHRUN)
    assert env == distenv.DistEnv(rank=3, local_rank=1, world_size=4, local_world_size=2,
                                  master_addr="job-master-0", master_port=23456)
    assert not env.is_primary and not env.is_node_leader


def test_local_world_size_defaults_to_world_size():
    env = distenv.read_dist_env({k: v for k, v in TORCHRUN.items() if k != "LOCAL_WORLD_SIZE"} | {"RANK": "0",
                                                                                                  "LOCAL_RANK": "0"})
    assert env.local_world_size == 4 and env.is_primary and env.is_node_leader


@pytest.mark.parametrize("drop", ["RANK", "MASTER_PORT"])
def test_missing_variable_is_named(drop):
    with pytest.raises(ValueError, match=drop):
        distenv.read_dist_env({k: v for k, v in TORCHRUN.items() if k != drop})


@pytest.mark.parametrize("key,value", [("RANK", "x"), ("RANK", "4"), ("LOCAL_RANK", "2")])
def test_bad_values_rejected(key, value):
    with pytest.raises(ValueError):
        distenv.read_dist_env(TORCHRUN | {key: value})


def test_single_process_env_fills_a_job_of_one():
    environ: dict[str, str] = {}
    distenv.single_process_env(environ)
    env = distenv.read_dist_env(environ)
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == (0, 0, 1, 1)
    assert env.master_addr == "127.0.0.1" and env.master_port > 0


def test_single_process_env_leaves_partial_settings_for_the_error():
    environ = {"RANK": "1"}
    distenv.single_process_env(environ)
    assert environ == {"RANK": "1"}
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        distenv.read_dist_env(environ)


@pytest.mark.parametrize("cpus,procs,expected", [(2, 1, 2), (2, 2, 1), (16, 8, 2), (2, 4, 1), (7, 2, 3)])
def test_threads_per_process(cpus, procs, expected):
    assert distenv.threads_per_process(cpus, procs) == expected
