"""CPUs and shared memory the process may use (``senet_zoo/host.py``), read from hand-written cgroup files,
and validate's default worker count honouring them."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from senet_zoo import host
from senet_zoo.validation.runner import default_workers


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """Point the cgroup readers at files of this test; returns a writer for them."""
    paths = {"v2": tmp_path / "cpu.max", "v1q": tmp_path / "cpu.cfs_quota_us", "v1p": tmp_path / "cpu.cfs_period_us"}
    monkeypatch.setattr(host, "CGROUP_V2_CPU_MAX", paths["v2"])
    monkeypatch.setattr(host, "CGROUP_V1_QUOTA", paths["v1q"])
    monkeypatch.setattr(host, "CGROUP_V1_PERIOD", paths["v1p"])

    def write(**texts):
        for key, text in texts.items():
            paths[key].write_text(text)
    return write


@pytest.fixture
def many_cores(monkeypatch):
    """A 192-core host as sched_getaffinity reports it, whatever this machine has."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(192)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


@pytest.mark.parametrize("text, quota", [("400000 100000\n", 4.0), ("250000 100000", 2.5), ("50000 100000", 0.5),
                                         ("max 100000\n", None), ("", None), ("garbage", None), ("-1 100000", None)])
def test_cgroup_v2_cpu_max(cgroup, text, quota):
    cgroup(v2=text)
    assert host.cpu_quota() == quota


def test_cgroup_v1_quota_when_there_is_no_cpu_max(cgroup):
    cgroup(v1q="300000\n", v1p="100000\n")
    assert host.cpu_quota() == 3.0
    cgroup(v1q="-1\n")
    assert host.cpu_quota() is None


def test_no_cgroup_files_means_no_quota(cgroup):
    assert host.cpu_quota() is None


def test_usable_cpus_is_the_affinity_capped_by_the_quota_rounded_up(cgroup, many_cores):
    assert host.usable_cpus() == 192
    cgroup(v2="250000 100000")
    assert host.usable_cpus() == 3
    cgroup(v2="50000 100000")
    assert host.usable_cpus() == 1


def test_validate_default_cuda_workers_honour_the_quota(cgroup, many_cores):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert default_workers(cuda) == 191 and default_workers(cpu) == 8
    cgroup(v2="400000 100000\n")                     # docker --cpus 4 on a 192-core host
    assert default_workers(cuda) == 3 and default_workers(cpu) == 4
    cgroup(v2="100000 100000\n")
    assert default_workers(cuda) == 1


def test_torchrun_ranks_share_the_quota(cgroup, many_cores, monkeypatch):
    cgroup(v2="1600000 100000\n")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers(torch.device("cuda")) == 3   # 16 CPUs / 4 ranks, one feeds the GPU


def test_shm_size_and_free_space_agree_with_shutil(tmp_path):
    size, free = host.shm_bytes(tmp_path)
    usage = shutil.disk_usage(tmp_path)
    assert size == usage.total and abs(free - usage.free) < 64 << 20   # others write to this disk meanwhile
    assert host.shm_bytes(tmp_path / "absent") is None
