"""Evaluate: bias/scatter/calibration numbers on a planted run, and every figure is written."""

import json

import numpy as np
import pytest
from astropy.table import Table

from starlabel.evaluation import metrics as M
from starlabel.labels import DEFAULT_LABELS
from toys import OFFSET, SIGMA

def test_bias_scatter_and_sigma():
    b, s, n = M.bias_scatter([1.0, 3.0, np.nan], [0.0, 0.0, 1.0])
    assert (b, s, n) == (2.0, 1.0, 2)
    assert M.within_sigma([0.0, 0.0, 0.0], [0.5, 1.5, 2.5], [1.0, 1.0, 1.0], 1) == pytest.approx(1 / 3)
    assert M.within_sigma([0.0, 0.0, 0.0], [0.5, 1.5, 2.5], [1.0, 1.0, 1.0], 2) == pytest.approx(2 / 3)


@pytest.mark.slow
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


@pytest.mark.slow
def test_subsets_follow_split_and_map(evaluated):
    run, _ = evaluated
    from starlabel.io.dataset import Dataset
    from starlabel.model.bundle import Bundle

    sets = Dataset(run / "sets.h5")
    joined = M.join_run(sets.catalogue, Table.read(run / "labels.fits"), Bundle(run / "model").split(),
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


@pytest.mark.slow
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
    from starlabel.plots import evaluation as F

    assert F.one_to_one({}, ["TEFF"], tmp_path / "a.png").stat().st_size > 0
    assert F.kiel_evolution({}, tmp_path / "b.png").stat().st_size > 0
    assert F.loss_curves({}, tmp_path / "c.png").stat().st_size > 0
    assert F.abundance_maps({}, tmp_path / "d.png").stat().st_size > 0
    assert F.calibration({"TEFF": np.array([np.nan])}, tmp_path / "e.png").stat().st_size > 0
