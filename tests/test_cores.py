"""Thread counts from the cores this process may use (issue 15 §2)."""

import os

import torch

from starlabel import cores


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cores.cgroup_cpu_limit(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cores.cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cores.cgroup_cpu_limit(tmp_path / "v1") == 3.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cores.cgroup_cpu_limit(tmp_path / "v1") is None
    assert cores.cgroup_cpu_limit(tmp_path / "nothing") is None


def test_usable_cores_within_affinity_and_quota(monkeypatch):
    n = cores.usable_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda root=None: 0.5)
    assert cores.usable_cores() == 1  # a quota below one core still gets one thread
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda root=None: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert cores.usable_cores() == 1


def test_configure_threads_and_passive_openmp():
    import starlabel  # noqa: F401 - sets the OpenMP wait policy unless already set

    assert "OMP_WAIT_POLICY" in os.environ
    saved = torch.get_num_threads()
    try:
        assert cores.configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert cores.configure_threads() == cores.usable_cores() == torch.get_num_threads()
    finally:
        torch.set_num_threads(saved)
