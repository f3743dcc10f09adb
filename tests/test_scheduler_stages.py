"""The stages on a Dask cluster (issue 15 §3): `--scheduler` gives the same output as one process,
retries a failing chunk and does not redo finished ones."""

import numpy as np
import pytest
from astropy.table import Table

import starlabel.stages.predict as predict_stage
from starlabel.cli import main
from starlabel.stages.predict import parts_dir, predict
from toys import make_sets, mixed_format_survey


@pytest.fixture(scope="module")
def threads_client():
    """An in-process cluster (worker threads): fast, and a monkeypatched task reaches it."""
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def process_client():
    """Two single-threaded worker processes, as `--scheduler local:2` starts them."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def assert_same_table(a, b):
    a, b = Table.read(a, mask_invalid=False), Table.read(b, mask_invalid=False)
    assert a.colnames == b.colnames and len(a) == len(b)
    for c in a.colnames:
        assert a[c].dtype == b[c].dtype, c
        np.testing.assert_array_equal(np.asarray(a[c]), np.asarray(b[c]), err_msg=c)  # NaN == NaN here
    assert a.meta == b.meta


@pytest.mark.slow
def test_predict_on_worker_processes_is_the_single_process_output(toy_bundle, tmp_path, process_client):
    data = make_sets(tmp_path / "obs.h5", n=70, seed=4, nan_rows=(9,), n_observed=70)
    kw = dict(carry=["SNR"], chunk=8, noise_draws=2, seed=5, progress=False)
    with pytest.warns(UserWarning, match="TOY00009"):
        one = predict(toy_bundle, data, tmp_path / "one.fits", **kw)
    with pytest.warns(UserWarning, match="TOY00009"):
        many = predict(toy_bundle, data, tmp_path / "many.fits", scheduler=process_client, task_rows=20, **kw)
    t = Table.read(many, mask_invalid=False)
    assert np.isnan(t["TEFF_CNN"][9]) and np.isfinite(t["E_FE_H_NOISE"][10:]).all()
    assert_same_table(one, many)
    assert not parts_dir(many).exists()


@pytest.mark.slow
def test_predict_places_new_spectra_on_the_map_on_workers(toy_bundle, tmp_path, process_client):
    from starlabel.io.dataset import Dataset, write_dataset
    from starlabel.stages.map import map as map_spectra

    sets = make_sets(tmp_path / "sets.h5", n=160, seed=3, n_observed=60)
    map_spectra(sets, tmp_path / "map.h5", seed=0)
    ds = Dataset(sets)  # a night's new spectra: renamed copies of 40 map spectra and the 120 others as they are
    cat = ds.catalogue.copy()
    cat["CNAME"][:40] = [f"NEW{i:05d}" for i in range(40)]
    new = write_dataset(tmp_path / "new.h5", ds.grid, ds.read(), np.zeros((160, ds.n_pixels), "u1"), cat)
    kw = dict(map_path=tmp_path / "map.h5", chunk=8, progress=False)
    one = predict(toy_bundle, new, tmp_path / "one.fits", **kw)
    many = predict(toy_bundle, new, tmp_path / "many.fits", scheduler=process_client, task_rows=16, **kw)
    assert_same_table(one, many)
    t = Table.read(many)
    assert t["INNER"][:40].any() and not parts_dir(many).exists()


@pytest.mark.slow
def test_predict_cli_with_a_local_cluster(toy_bundle, tmp_path, capsys):
    data = make_sets(tmp_path / "obs.h5", n=30, seed=6, n_observed=30)
    args = ["predict", str(toy_bundle), str(data), "--chunk", "16", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "one.fits")]) == 0
    assert main([*args, "--out", str(tmp_path / "two.fits"), "--scheduler", "local:2"]) == 0
    assert_same_table(tmp_path / "one.fits", tmp_path / "two.fits")
    assert main([*args, "--out", str(tmp_path / "x.fits"), "--scheduler", "nowhere"]) == 2
    assert "--scheduler 'nowhere'" in capsys.readouterr().err


def test_predict_retries_a_failing_block_and_resumes_after_a_failure(toy_bundle, tmp_path, threads_client,
                                                                      monkeypatch):
    data = make_sets(tmp_path / "obs.h5", n=48, seed=8, n_observed=48)
    kw = dict(chunk=4, noise_draws=1, seed=2, progress=False, task_rows=8)  # 6 blocks of 2 chunks
    one = predict(toy_bundle, data, tmp_path / "one.fits", **kw)
    real = predict_stage._label_block
    log, marks = tmp_path / "calls.txt", tmp_path / "marks"
    marks.mkdir()

    def calls():  # first rows of the blocks computed (tasks are serialised: state lives in files)
        return sorted(int(x) for x in log.read_text().split()) if log.exists() else []

    def task(fail_on=None, once=True):
        def run(*a):
            first = int(a[5][0])
            if first == fail_on and not (once and (marks / str(first)).exists()):
                (marks / str(first)).touch()
                raise OSError(f"worker lost block {first}")
            with open(log, "a") as f:
                f.write(f"{first}\n")
            return real(*a)
        return run

    out = tmp_path / "many.fits"
    monkeypatch.setattr(predict_stage, "_label_block", task(fail_on=16))  # fails once: retried
    assert_same_table(one, predict(toy_bundle, data, out, scheduler=threads_client, **kw))
    assert (marks / "16").exists() and calls() == [0, 8, 16, 24, 32, 40]

    monkeypatch.setattr(predict_stage, "_label_block", task(fail_on=24, once=False))  # fails for good
    out.unlink()
    log.unlink()
    with pytest.raises(OSError, match="worker lost block 24"):
        predict(toy_bundle, data, out, scheduler=threads_client, **kw)
    done = len(list(parts_dir(out).glob("part*.npz")))
    assert not out.exists() and done >= 3  # the blocks before the failed one are on disk
    log.unlink()
    monkeypatch.setattr(predict_stage, "_label_block", task())
    assert_same_table(one, predict(toy_bundle, data, out, scheduler=threads_client, **kw))
    assert 24 in calls() and len(calls()) == 6 - done  # only the blocks that were not on disk
    assert not parts_dir(out).exists()
    # other settings do not reuse the parts of a job: a fresh run computes every block
    log.unlink()
    predict(toy_bundle, data, tmp_path / "s3.fits", scheduler=threads_client, **{**kw, "seed": 3})
    assert len(calls()) == 6


# ---------------------------------------------------------------- prepare

@pytest.fixture
def survey(tmp_path):
    return mixed_format_survey(tmp_path)


import starlabel.stages.prepare as prepare_stage  # noqa: E402
from starlabel.io.dataset import Dataset  # noqa: E402
from starlabel.stages.prepare import PrepareSettings, prepare  # noqa: E402


def assert_same_dataset(a, b):
    a, b = Dataset(a), Dataset(b)
    fa, ma = a.read(mask=True)
    fb, mb = b.read(mask=True)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(ma, mb)
    assert a.has_error == b.has_error
    if a.has_error:  # /error travels through the cluster's parts too (NaN where unknown)
        np.testing.assert_array_equal(a.read_error(), b.read_error())
    assert a.grid == b.grid and a.settings == b.settings
    for ta, tb in ((a.catalogue, b.catalogue), (a.rejects, b.rejects)):
        assert ta.colnames == tb.colnames and len(ta) == len(tb)
        for c in ta.colnames:
            np.testing.assert_array_equal(np.asarray(ta[c]), np.asarray(tb[c]), err_msg=c)


@pytest.mark.slow
def test_prepare_on_worker_processes_is_the_single_process_dataset(survey, process_client):  # noqa: F811
    settings = PrepareSettings(chunk=2)
    one, n1, rej1 = prepare(survey / "catalogue.fits", survey / "spectra", survey / "one.h5", settings,
                            progress=False)
    many, n2, rej2 = prepare(survey / "catalogue.fits", survey / "spectra", survey / "many.h5", settings,
                             progress=False, scheduler=process_client)
    assert n1 == n2 == 5 and len(rej1) == len(rej2) > 0
    assert_same_dataset(one, many)
    assert not (survey / "many.h5.parts").exists()


def test_prepare_resumed_on_a_cluster_is_the_same_dataset(survey, threads_client, monkeypatch):  # noqa: F811
    settings = PrepareSettings(chunk=2)
    args = (survey / "catalogue.fits", survey / "spectra")
    one, *_ = prepare(*args, survey / "one.h5", settings, progress=False)
    real = prepare_stage._prepare_part

    def fails_on_nans(items, settings):  # the chunk holding star 'nans' fails for good
        if any(it[1] == "nans" for it in items):
            raise OSError("node lost")
        return real(items, settings)

    monkeypatch.setattr(prepare_stage, "_prepare_part", fails_on_nans)
    out = survey / "many.h5"
    with pytest.raises(OSError, match="node lost"):
        prepare(*args, out, settings, progress=False, scheduler=threads_client)
    assert not out.exists() and len(list((survey / "many.h5.parts").glob("part*.npz"))) >= 2
    monkeypatch.setattr(prepare_stage, "_prepare_part", real)
    many, n, _ = prepare(*args, out, settings, progress=False, scheduler=threads_client)  # parts from disk
    assert n == 5
    assert_same_dataset(one, many)


# ---------------------------------------------------------------- train

import json  # noqa: E402

from toys import FAST  # noqa: E402


def bundle_files(path):
    return sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file() and "checkpoints" not in p.parts)


@pytest.mark.slow
def test_train_runs_on_worker_processes_give_the_single_process_bundle(toy_sets, tmp_path, process_client):
    import torch

    from starlabel.stages.train import train

    kw = dict(runs=3, keep=2, seed=4, **{**FAST, "max_epochs": 4})
    saved = torch.get_num_threads()
    try:  # one torch thread per run, as on each single-threaded worker
        one = train(toy_sets, tmp_path / "one", threads=1, **kw)
    finally:
        torch.set_num_threads(saved)
    many = train(toy_sets, tmp_path / "many", scheduler=process_client, **kw)
    assert bundle_files(one) == bundle_files(many)
    for f in bundle_files(one):
        if f.name != "manifest.json":
            assert (one / f).read_bytes() == (many / f).read_bytes(), f
    a, b = (json.loads((p / "manifest.json").read_text()) for p in (one, many))
    assert b["data"].pop("dask_workers") == 2
    for m in (a, b):
        for k in ("created", "threads"):
            m["data"].pop(k)
    assert a == b
    # a rerun finds every run finished in its checkpoint: nothing is trained again
    stamps = {p: p.stat().st_mtime_ns for p in (many / "checkpoints").glob("run*.safetensors")}
    assert len(stamps) == 3
    train(toy_sets, tmp_path / "many", scheduler=process_client, **kw)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_fused_training_on_a_cluster_is_refused_before_anything_is_written(tmp_path):
    from starlabel.model.config import preset
    from starlabel.model.train import fit_runs
    from toys import TOY_GRID, toy_spectra

    flux, cat = toy_spectra(40)
    y = np.stack([cat[n] for n in ("TEFF", "LOGG", "FE_H")], 1)
    with pytest.raises(ValueError, match="fused training and a Dask scheduler"):
        fit_runs(flux, y, ("TEFF", "LOGG", "FE_H"), TOY_GRID, preset("quick", runs=2, keep=1),
                 checkpoint_dir=tmp_path / "c", fused=True, client=object())
    assert not (tmp_path / "c").exists()


def test_a_bad_scheduler_fails_before_any_work(survey, toy_sets, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "nothing"
    assert main(["prepare", str(survey / "catalogue.fits"), str(survey / "spectra"), "--out", str(out / "d.h5"),
                 "--scheduler", "nowhere", "--no-progress"]) == 2
    assert main(["train", str(toy_sets), "--out", str(out / "model"), "--scheduler", "local:0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler 'nowhere'" in err and "at least 1 worker" in err and not out.exists()
