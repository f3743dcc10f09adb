"""Evaluate: bias/scatter/calibration numbers on a planted run, and every figure is written."""

import json
import warnings

import numpy as np
import pytest
from astropy.table import Table

from starlabel.evaluate import metrics as M
from starlabel.grid import Grid, Setup
from starlabel.labels import DEFAULT_LABELS

GRID = Grid((Setup("HR10", 5500.0, 5560.0, 0.06), Setup("HR21", 8700.0, 8820.0, 0.1)))
OFFSET = {"TEFF": 20.0, "LOGG": -0.05, "MG_FE": 0.01, "AL_FE": 0.02, "FE_H": -0.01}
SIGMA = {"TEFF": 40.0, "LOGG": 0.08, "MG_FE": 0.04, "AL_FE": 0.06, "FE_H": 0.04}


def make_run(run, n=240, seed=0):
    """A fake RUN_DIR: sets.h5, model/ (split, history, manifest, snapshots), labels.fits, map.h5, truth.

    CNN = truth + OFFSET + N(0, SIGMA) and the ensemble std is SIGMA, so bias ≈ OFFSET,
    scatter ≈ SIGMA and ~68 % / ~95 % lie within 1σ / 2σ.
    """
    from safetensors.numpy import save_file

    from starlabel.io.dataset import write_dataset, write_table

    rng = np.random.default_rng(seed)
    run.mkdir(parents=True, exist_ok=True)
    cname = np.array([f"C{i:05d}" for i in range(n)])
    n_train = n // 2
    truth = Table({"CNAME": cname, "TEFF": rng.uniform(4000, 6500, n), "LOGG": rng.uniform(1, 4.8, n),
                   "MG_FE": rng.uniform(-0.1, 0.4, n), "AL_FE": rng.uniform(-0.2, 0.4, n),
                   "FE_H": rng.uniform(-1.5, 0.4, n)})
    cat = Table({"CNAME": cname, "SET": np.where(np.arange(n) < n_train, "train", "observed"),
                 "SNR": np.where(np.arange(n) < n_train, rng.uniform(30, 150, n), rng.uniform(10, 80, n))})
    labels = Table({"CNAME": cname})
    for name in DEFAULT_LABELS:
        cat[name] = truth[name] + 0.5 * SIGMA[name] * rng.standard_normal(n)
        labels[f"{name}_CNN"] = truth[name] + OFFSET[name] + SIGMA[name] * rng.standard_normal(n)
        labels[f"E_{name}_CNN"] = np.full(n, SIGMA[name])
    flux = (1 + 0.02 * rng.standard_normal((n, GRID.n_pixels))).astype(np.float32)
    write_dataset(run / "sets.h5", GRID, flux, np.zeros(flux.shape, np.uint8), cat, settings={"seed": seed})
    labels.write(run / "labels.fits", overwrite=True)
    (run / "survey").mkdir(exist_ok=True)
    truth.write(run / "survey" / "truth.fits", overwrite=True)

    model = run / "model"
    model.mkdir(exist_ok=True)
    test = cname[: n_train][::3]
    train = np.setdiff1d(cname[:n_train], test)
    (model / "split.json").write_text(json.dumps({"train": train.tolist(), "test": test.tolist()}))
    hist = {str(i): {"train_loss": list(1.0 / np.arange(1, 21) + 0.01 * i),
                     "test_loss": list(1.1 / np.arange(1, 21) + 0.01 * i)} for i in range(3)}
    (model / "history.json").write_text(json.dumps(hist))
    manifest = {"labels": {"names": list(DEFAULT_LABELS), "mean": [0] * 5, "scale": [1] * 5},
                "runs": [{"index": i, "seed": i, "test_loss": 0.05 + 0.01 * i, "epochs": 20, "kept": i < 2}
                         for i in range(3)], "training_data_hash": "abc123", "versions": {"torch": "x"}}
    (model / "manifest.json").write_text(json.dumps(manifest))
    test_rows = np.flatnonzero(np.isin(cname, test))
    snaps = {"test_rows": test_rows.astype(np.int64)}
    for ep, noise in ((1, 1.0), (5, 0.3), (20, 0.05)):
        snaps[f"epoch_{ep}"] = np.column_stack(
            [truth[nm][test_rows] + noise * (SIGMA[nm] * 10) * rng.standard_normal(len(test_rows))
             for nm in DEFAULT_LABELS]).astype(np.float32)
    save_file(snaps, str(model / "snapshots.safetensors"))

    # a minimal map file: a catalogue table with CNAME, SET, INNER, OUTLIER (as starlabel map writes)
    import h5py

    observed = cat["SET"] == "observed"
    outlier = np.arange(n) == n - 1  # outliers are never inner (starlabel.similarity)
    mtab = Table({"CNAME": cname, "SET": cat["SET"], "INNER": observed & (np.arange(n) % 4 != 0) & ~outlier,
                  "OUTLIER": outlier})
    with h5py.File(run / "map.h5", "w") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_table(f, "catalogue", mtab)
    return run


_CACHE = {}


def evaluated_run(tmp_path_factory):
    """make_run + evaluate, once per session (test_report reuses it: figures are the slow part)."""
    from starlabel.evaluate import evaluate, figures

    if "run" not in _CACHE:
        figures.DPI = 40
        try:
            run = make_run(tmp_path_factory.mktemp("run"))
            index = evaluate(run / "model", run / "sets.h5", run / "labels.fits", run / "eval",
                             map_path=run / "map.h5", truth_path=run / "survey" / "truth.fits", echo=None)
        finally:
            figures.DPI = 110
        _CACHE["run"] = (run, index)
    return _CACHE["run"]


@pytest.fixture
def evaluated(tmp_path_factory):
    return evaluated_run(tmp_path_factory)


def test_bias_scatter_and_sigma():
    b, s, n = M.bias_scatter([1.0, 3.0, np.nan], [0.0, 0.0, 1.0])
    assert (b, s, n) == (2.0, 1.0, 2)
    assert M.within_sigma([0.0, 0.0, 0.0], [0.5, 1.5, 2.5], [1.0, 1.0, 1.0], 1) == pytest.approx(1 / 3)
    assert M.within_sigma([0.0, 0.0, 0.0], [0.5, 1.5, 2.5], [1.0, 1.0, 1.0], 2) == pytest.approx(2 / 3)


def test_metrics_recover_planted_bias_and_scatter(evaluated):
    run, _ = evaluated
    t = Table.read(run / "eval" / "metrics.csv", format="ascii.csv")
    assert set(t["set"]) == {"train", "test", "inner_snr_ge30", "inner_snr_lt30", "outer"}
    assert set(t["reference"]) == {"catalogue", "truth"}
    truth_rows = t[(t["reference"] == "truth")]
    for name in DEFAULT_LABELS:
        r = truth_rows[truth_rows["label"] == name]
        n = r["n"].sum()
        bias = np.sum(r["bias"] * r["n"]) / n
        assert bias == pytest.approx(OFFSET[name], abs=4 * SIGMA[name] / np.sqrt(n))
        assert np.median(r["scatter"]) == pytest.approx(SIGMA[name], rel=0.35)
        assert 0.5 < np.median(r["within_1sigma"]) < 0.85 and np.median(r["within_2sigma"]) > 0.85


def test_subsets_follow_split_and_map(evaluated):
    run, _ = evaluated
    from starlabel.io.dataset import Dataset

    sets = Dataset(run / "sets.h5")
    joined = M.join_run(sets.catalogue, Table.read(run / "labels.fits"), M.read_split(run / "model"),
                        M.read_map_flags(run / "map.h5"))
    n = len(joined)
    assert joined["test"].sum() == len(json.loads((run / "model" / "split.json").read_text())["test"])
    assert not np.any(joined["train"] & joined["test"])
    obs = np.asarray(joined["observed"])
    inner = np.asarray(joined["inner_snr_ge30"]) | np.asarray(joined["inner_snr_lt30"])
    assert np.all(inner | np.asarray(joined["outer"]) == obs)
    assert np.all(np.asarray(joined["SNR"])[joined["inner_snr_lt30"]] < 30)
    assert joined["OUTLIER"].sum() == 1 and joined["outer"][n - 1]
    snr = M.precision_vs_snr(joined)
    assert snr["snr_lo"][0] == 10 and np.all(np.diff(snr["snr_lo"]) == 10)
    assert snr["n"].sum() == obs.sum()


def test_every_figure_is_written(evaluated):
    run, index = evaluated
    expected = {"one_to_one_training_catalogue.png", "one_to_one_observed_catalogue.png",
                "one_to_one_training_truth.png", "one_to_one_observed_truth.png", "kiel_evolution.png",
                "loss_curves.png", "precision.png", "abundance_maps.png", "calibration_catalogue.png",
                "calibration_truth.png"}
    assert expected <= set(index)
    for name in index:
        assert (run / "eval" / name).stat().st_size > (500 if name.endswith(".png") else 20), name
    with open(run / "eval" / expected.pop(), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_figures_handle_empty_input(tmp_path):
    from starlabel.evaluate import figures as F

    assert F.one_to_one({}, ["TEFF"], tmp_path / "a.png").stat().st_size > 0
    assert F.kiel_evolution({}, tmp_path / "b.png").stat().st_size > 0
    assert F.loss_curves({}, tmp_path / "c.png").stat().st_size > 0
    assert F.abundance_maps({}, tmp_path / "d.png").stat().st_size > 0
    assert F.calibration({"TEFF": np.array([np.nan])}, tmp_path / "e.png").stat().st_size > 0
