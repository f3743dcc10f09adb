"""starlabel.scheduler (issue 15 §3): the --scheduler option, and chunks mapped over a Dask cluster
in order, retried when they fail, and not redone once their part is on disk."""

from pathlib import Path

import numpy as np
import pytest

from starlabel.scheduler import Parts, connect, fingerprint, map_chunks, parse, worker_threads


@pytest.fixture(scope="module")
def client():
    """An in-process cluster (threads, no worker processes): fast, and monkeypatching works."""
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


def square(x, calls: str):
    with open(calls, "a") as f:
        f.write(f"{x}\n")
    return {"x": np.array([x, x * x]), "name": f"chunk {x}", "nan": float("nan")}


def flaky(x, calls: str, marks: str):
    """Raises the first time it is called for x = 2 (a marker file remembers, across processes)."""
    mark = Path(marks) / f"{x}"
    if x == 2 and not mark.exists():
        mark.touch()
        raise RuntimeError("node fell over")
    return square(x, calls)


def always_fails_on_3(x, calls: str):
    if x == 3:
        raise ValueError("bad chunk 3")
    return square(x, calls)


def calls(path) -> list[int]:
    return sorted(int(s) for s in Path(path).read_text().split()) if Path(path).exists() else []


def test_parse_scheduler_option(tmp_path):
    assert parse(None) == ("none", None) and parse("none") == ("none", None) and parse("") == ("none", None)
    assert parse("local:3") == ("local", 3) and parse("local")[0] == "local" and parse("local")[1] >= 1
    assert parse("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    assert parse("node12:8786") == ("address", "tcp://node12:8786")
    f = tmp_path / "scheduler.json"
    f.write_text("{}")
    assert parse(str(f)) == ("file", str(f))
    with pytest.raises(ValueError, match="neither"):
        parse("no/such/scheduler.json")
    with pytest.raises(ValueError, match="at least 1"):
        parse("local:0")
    with connect("none") as c:
        assert c is None
    assert worker_threads(3) == 3 and worker_threads() >= 1


def test_results_come_in_order_and_failed_chunks_are_retried(client, tmp_path):
    log = tmp_path / "calls"
    out = list(map_chunks(client, flaky, [(i, str(log), str(tmp_path)) for i in range(6)], window=3))
    assert [int(r["x"][0]) for r in out] == list(range(6))
    assert [r["name"] for r in out] == [f"chunk {i}" for i in range(6)]
    assert (tmp_path / "2").exists() and calls(log) == list(range(6))  # 2 failed once, then ran


def test_finished_chunks_are_not_redone(client, tmp_path):
    log = tmp_path / "calls"
    parts = Parts(tmp_path / "out.parts", fingerprint({"job": 1}))
    tasks = [(i, str(log)) for i in range(5)]
    with pytest.raises(ValueError, match="bad chunk 3"):
        list(map_chunks(client, always_fails_on_3, tasks, parts=parts, retries=1))
    # chunks before the failed one are on disk (chunk 4 may have been cancelled in flight)
    kept = parts.done()
    assert 3 not in kept and {0, 1, 2} <= set(kept)
    # the rerun computes only what is not on disk; the rest comes from there, the same values, NaN included
    before = calls(log)
    out = list(map_chunks(client, square, tasks, parts=Parts(tmp_path / "out.parts", fingerprint({"job": 1}))))
    assert sorted(set(calls(log))) == list(range(5))
    assert len(calls(log)) - len(before) == 5 - len(kept) and calls(log).count(3) == 1
    assert [r["x"].tolist() for r in out] == [[i, i * i] for i in range(5)]
    assert all(np.isnan(r["nan"]) and r["name"] == f"chunk {i}" for i, r in enumerate(out))
    # another job's parts are never reused
    again = Parts(tmp_path / "out.parts", fingerprint({"job": 2}))
    assert again.done() == []
    again.remove()
    assert not (tmp_path / "out.parts").exists()


def test_without_a_client_the_chunks_run_here(tmp_path):
    log = tmp_path / "calls"
    parts = Parts(tmp_path / "p", "k")
    out = list(map_chunks(None, square, [(i, str(log)) for i in range(3)], parts=parts))
    assert [int(r["x"][1]) for r in out] == [0, 1, 4] and parts.done() == [0, 1, 2]


def test_worker_cache_loads_once_per_key():
    from starlabel.scheduler import cached

    loads = []
    a = cached("test-kind", "a", lambda: loads.append("a") or ["A"])
    assert cached("test-kind", "a", lambda: loads.append("again") or None) is a and loads == ["a"]
    assert cached("test-kind", "b", lambda: loads.append("b") or ["B"]) == ["B"] and loads == ["a", "b"]
    assert cached("test-kind", "a", lambda: loads.append("a") or ["A"]) == ["A"] and loads == ["a", "b", "a"]


@pytest.mark.slow
def test_local_workers_keep_glibc_malloc_defaults():
    """Dask's MALLOC_TRIM_THRESHOLD_ made torch inference 1.6x slower on the workers (scheduler.connect)."""
    import os

    with connect("local:1") as c:
        env = c.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
    assert list(env.values()) == [(None, "1")]
