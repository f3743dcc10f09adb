"""Calibrated error bars (`starlabel calibrate`): the model-error term, its bundle file and its use in predict."""

import json
import logging
import shutil

import numpy as np
import pytest
from astropy.table import Table

from starlabel.evaluation.calibration import ONE_SIGMA, fit, model_error
from starlabel.model.bundle import Bundle, BundleError, write_calibration


def _residuals(n, sigma_model, seed=0):
    """Residuals of predictions whose error is their bar ⊕ σ_model, against references with their own errors."""
    rng = np.random.default_rng(seed)
    bar = rng.uniform(0.5, 2.0, n)
    ref_error = rng.uniform(0.0, 0.8, n)
    r = rng.normal(size=n) * np.sqrt(bar**2 + ref_error**2 + sigma_model**2)
    return r, bar, ref_error


def test_model_error_recovers_the_missing_term_and_takes_the_reference_error_out():
    r, bar, ref_error = _residuals(40_000, 1.5)
    assert model_error(r, bar, ref_error) == pytest.approx(1.5, rel=0.03)
    # without the reference's error the term has to hold it too
    assert model_error(r, bar) > model_error(r, bar, ref_error) + 0.05


def test_model_error_is_zero_when_the_bars_already_cover_and_ignores_missing_values():
    r, bar, ref_error = _residuals(5_000, 0.0, seed=1)
    assert model_error(r, 2 * bar, ref_error) == 0.0
    r[::3] = np.nan
    ref_error[1::5] = np.nan  # an unknown reference error counts as 0
    assert np.isfinite(model_error(r, bar, ref_error))
    assert np.isnan(model_error(np.full(4, np.nan), np.ones(4)))
    with pytest.raises(ValueError, match="coverage"):
        model_error(r, bar, coverage=1.0)


def test_fit_brings_the_coverage_to_a_gaussians():
    names = ("TEFF", "LOGG")
    rng = np.random.default_rng(3)
    n = 20_000
    truth = rng.normal(size=(n, 2))
    std, noise = rng.uniform(0.2, 0.6, (n, 2)), rng.uniform(0.2, 1.0, (n, 2))
    ref_error = np.full((n, 2), 0.3)
    mean = truth + rng.normal(size=(n, 2)) * np.sqrt(std**2 + noise**2 + np.array([1.0, 0.0]) ** 2)
    ref = truth + rng.normal(size=(n, 2)) * ref_error
    got = fit(names, mean, std, noise, ref, ref_error)
    assert got["TEFF"]["sigma_model"] == pytest.approx(1.0, rel=0.05)
    assert got["TEFF"]["within_1sigma_before"] < 0.55
    assert got["TEFF"]["within_1sigma"] == pytest.approx(ONE_SIGMA, abs=0.01)
    assert got["TEFF"]["within_2sigma"] == pytest.approx(0.954, abs=0.01)
    assert got["LOGG"]["sigma_model"] < 0.1  # nothing was missing
    assert got["LOGG"]["n"] == n


@pytest.fixture
def bundle(toy_bundle, tmp_path):
    """A copy of the session's toy bundle that the test may calibrate."""
    return shutil.copytree(toy_bundle, tmp_path / "bundle")


def test_calibrate_writes_the_term_and_predict_adds_it_to_the_total(bundle, toy_sets, tmp_path):
    from starlabel.io.dataset import Dataset
    from starlabel.model.ensemble import Ensemble
    from starlabel.stages.calibrate import calibrate, held_out_rows
    from starlabel.stages.predict import predict

    assert Ensemble.load(bundle).model_error is None
    record = calibrate(bundle, toy_sets, noise_draws=1, progress=False)
    saved = json.loads((bundle / "calibration.json").read_text())
    assert saved["labels"] == json.loads(json.dumps(record["labels"]))
    assert saved["n_spectra"] == len(held_out_rows(Bundle(bundle), Dataset(toy_sets)))
    for c in record["labels"].values():
        assert c["sigma_model"] >= 0 and c["within_1sigma"] >= c["within_1sigma_before"]
    assert record["labels"]["TEFF"]["within_1sigma"] == pytest.approx(ONE_SIGMA, abs=0.05)

    ens = Ensemble.load(bundle)
    np.testing.assert_allclose(ens.model_error, [record["labels"][n]["sigma_model"] for n in ens.labels.names])
    out = predict(bundle, toy_sets, tmp_path / "labels.fits", rows=np.arange(30), noise_draws=1, progress=False)
    t = Table.read(out)
    for n in ens.labels.names:
        np.testing.assert_allclose(t[f"E_{n}_MODEL"], record["labels"][n]["sigma_model"], rtol=1e-6)
        np.testing.assert_allclose(t[f"E_{n}_TOTAL"], np.sqrt(t[f"E_{n}_CNN"] ** 2 + t[f"E_{n}_NOISE"] ** 2
                                                             + t[f"E_{n}_MODEL"] ** 2), rtol=1e-5)
    # without noise draws the column is there, but no total that would lack the noise
    t0 = Table.read(predict(bundle, toy_sets, tmp_path / "l0.fits", rows=np.arange(5), progress=False))
    assert "E_TEFF_MODEL" in t0.colnames and "E_TEFF_TOTAL" not in t0.colnames


def test_a_calibration_of_other_weights_is_ignored_with_a_warning(bundle, toy_sets, caplog):
    from starlabel.model.ensemble import Ensemble

    write_calibration(bundle, {"labels": {"TEFF": {"sigma_model": 50.0}}})
    assert Ensemble.load(bundle).model_error[0] == 50.0  # labels it lacks get 0 (and a warning)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["history.json"] = "0" * 64  # as if the ensemble had been retrained or grown
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="starlabel"):
        assert Bundle(bundle).calibration() is None
    assert "starlabel calibrate" in caplog.text
    with pytest.raises(BundleError, match="does not predict"):
        write_calibration(bundle, {"labels": {"MG_FE": {"sigma_model": 0.1}}})


def test_calibrate_command_and_its_refusals(bundle, toy_sets, tmp_path, capsys):
    from starlabel.cli import main
    from starlabel.io.dataset import Dataset, write_dataset
    from toys import make_sets

    assert main(["calibrate", str(bundle), str(toy_sets), "--noise-draws", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sigma_model" in out and "TEFF" in out and "calibration.json" in out
    ds = Dataset(make_sets(tmp_path / "other.h5", n=40, seed=7))
    cat = ds.catalogue
    cat["CNAME"] = [f"OTHER{i}" for i in range(len(cat))]  # another survey's stars: none of the test spectra
    write_dataset(tmp_path / "renamed.h5", ds.grid, ds.read(), np.zeros((len(cat), ds.grid.n_pixels), "u1"), cat)
    assert main(["calibrate", str(bundle), str(tmp_path / "renamed.h5"), "--no-progress"]) == 2
    assert "none of the" in capsys.readouterr().err
    assert main(["calibrate", str(bundle), str(toy_sets), "--noise-draws", "0", "--no-progress"]) == 2


def test_a_reference_table_and_the_held_out_rows(bundle, toy_sets, tmp_path, caplog):
    from starlabel.io.dataset import Dataset
    from starlabel.model.ensemble import Ensemble
    from starlabel.stages.calibrate import calibrate, held_out_rows, reference_labels
    from toys import LABELS

    ds = Dataset(toy_sets)
    test = held_out_rows(Bundle(bundle), ds)
    cat = ds.catalogue[test]
    # a precise reference for TEFF only, and a catalogue whose errors swamp the bars
    ref = Table({"CNAME": cat["CNAME"][::-1], "TEFF": cat["TEFF"][::-1], "E_TEFF": np.full(len(cat), 1.0)})
    ref.write(tmp_path / "ref.fits")
    values, errors = reference_labels(cat, ("TEFF", "LOGG"), tmp_path / "ref.fits")
    np.testing.assert_allclose(values[:, 0], cat["TEFF"])  # matched by CNAME, not by row
    assert np.isnan(values[:, 1]).all() and (errors[:, 0] == 1.0).all()
    record = calibrate(bundle, toy_sets, reference=tmp_path / "ref.fits", noise_draws=1, progress=False)
    assert record["reference"].endswith("ref.fits") and record["labels"]["LOGG"]["n"] == 0
    assert np.isnan(record["labels"]["LOGG"]["sigma_model"]) and record["labels"]["TEFF"]["n"] == len(test)
    saved = json.loads((bundle / "calibration.json").read_text())  # plain JSON: no NaN, null instead
    assert saved["labels"]["LOGG"]["sigma_model"] is None
    with caplog.at_level(logging.WARNING, logger="starlabel"):
        assert Ensemble.load(bundle).model_error[LABELS.index("LOGG")] == 0.0
    assert "no model error for ['LOGG', 'FE_H']" in caplog.text

    loud = Table({"CNAME": cat["CNAME"], "TEFF": cat["TEFF"], "E_TEFF": np.full(len(cat), 5000.0)})
    loud.write(tmp_path / "loud.fits")
    with caplog.at_level(logging.WARNING, logger="starlabel"):
        assert calibrate(bundle, toy_sets, reference=tmp_path / "loud.fits", noise_draws=1,
                         progress=False)["labels"]["TEFF"]["sigma_model"] == 0.0
    assert "more precise reference" in caplog.text

    with pytest.raises(ValueError, match="rows"):
        held_out_rows(Bundle(bundle), ds, "all")
    with pytest.raises(ValueError, match="no CNAME"):
        reference_labels(cat, ("TEFF",), _write(tmp_path / "none.fits", Table({"CNAME": ["X"], "TEFF": [1.0]})))


def _write(path, table):
    table.write(path)
    return path


def test_held_out_rows_add_the_observed_set(bundle, tmp_path):
    from starlabel.io.dataset import Dataset
    from starlabel.stages.calibrate import held_out_rows
    from toys import make_sets

    # the toy bundle's spectra, with the last 20 turned into an observed set
    ds = Dataset(make_sets(tmp_path / "sets.h5", n=300, n_observed=20))
    test = held_out_rows(Bundle(bundle), ds)
    both = held_out_rows(Bundle(bundle), ds, "held-out")
    assert set(both) - set(test) == set(range(280, 300))  # observed rows are never in the test split


def test_the_report_shows_the_model_error_term(bundle, tmp_path):
    from starlabel.stages.report_summary import calibration_table

    assert calibration_table(bundle) == ""  # not calibrated: nothing to show
    write_calibration(bundle, {"labels": {"TEFF": {"sigma_model": 12.5, "n": 60, "within_1sigma_before": 0.5,
                                                   "within_1sigma": 0.683, "within_2sigma": 0.95}},
                               "n_spectra": 60, "rows": "test", "reference": "truth.fits"})
    html = calibration_table(bundle)
    assert "<td class=s>TEFF</td><td>12.5 K</td><td>60</td><td>50 %</td><td>68 %</td><td>95 %</td>" in html
    assert "60 test spectra against truth.fits" in html
    write_calibration(bundle, {"labels": {"LOGG": {"sigma_model": float("nan"), "n": 0, "within_1sigma_before": None,
                                                   "within_1sigma": None, "within_2sigma": None}},
                               "n_spectra": 60, "rows": "test", "reference": "teff_only.fits"})
    assert "<td class=s>LOGG</td><td>–" in calibration_table(bundle)  # a label without reference labels
    assert calibration_table(tmp_path / "no_bundle") == ""
