"""prepare's /error: the error spectrum propagated through repair, resolution matching and rebinning,
carried by select and used by predict's domain score (issue 11 item 5)."""

import h5py
import numpy as np
import pytest
from astropy.table import Table

from starlabel.grid import HR21, Grid, resample, resample_variance
from starlabel.io.dataset import MASK_NAN, MASK_REPAIRED, MASK_UNCOVERED, Dataset, write_dataset
from starlabel.io.spectra import Spectrum
from starlabel.lsf import degrade, degrade_variance
from starlabel.stages.prepare import PrepareSettings, prepare, prepare_spectrum

from toys import mixed_format_survey, native, star_flux

GRID = Grid.default()


def test_resample_variance_is_the_scatter_of_rebinned_noise():
    """Monte Carlo: independent noise of varying σ on 0.05-Å pixels, rebinned onto the 0.06-Å HR10 and
    0.1-Å HR21 grids at a velocity shift: the per-pixel scatter is sqrt(resample_variance)."""
    rng = np.random.default_rng(0)
    for name, vrad in (("HR10", 23.0), ("HR21", -7.0)):
        wave = native(name) / (1 + vrad / 299792.458)
        sig = 0.01 * (1 + 0.5 * np.sin(wave / 3))
        out, covered = resample(wave, rng.normal(0, 1, (600, wave.size)) * sig, GRID.setup(name).wavelength)
        pred = np.sqrt(resample_variance(wave, sig**2, GRID.setup(name).wavelength))
        assert np.array_equal(np.isfinite(pred), covered)
        ratio = out[:, covered].std(0) / pred[covered]
        assert np.median(ratio) == pytest.approx(1.0, abs=0.01) and np.percentile(ratio, 99) < 1.1
    # a 0.1-Å bin over two whole 0.05-Å pixels has σ/√2; one inside a single pixel keeps σ
    w = np.arange(0.025, 10, 0.05)
    v = resample_variance(w, np.full(w.size, 4.0), np.array([1.0, 1.1, 1.2]))
    assert v[1] == pytest.approx(2.0)
    assert resample_variance(w, np.full(w.size, 4.0), np.array([1.01, 1.02, 1.03]))[1] == pytest.approx(4.0)


def test_degrade_variance_is_the_scatter_of_smoothed_noise():
    rng = np.random.default_rng(1)
    wave = 8480 + 0.01 * np.arange(6000)  # UVES-like sampling, degraded from R 47 000 to 16 200
    noise = np.array([degrade(wave, rng.normal(0, 0.01, wave.size), 47000, 16200) for _ in range(200)])
    pred = np.sqrt(degrade_variance(wave, np.full(wave.size, 1e-4), 47000, 16200))
    inner = slice(200, -200)
    assert np.median(noise[:, inner].std(0) / pred[inner]) == pytest.approx(1.0, abs=0.03)
    assert np.median(pred) < 0.2 * 0.01  # the LSF averages ≈ 20 pixels
    assert np.array_equal(degrade_variance(wave, np.ones(wave.size), 16000, 16200), np.ones(wave.size))


def test_prepare_spectrum_error_nan_where_repaired_uncovered_or_absent():
    rng = np.random.default_rng(2)
    setup = GRID.setup("HR21")
    wave = native("HR21")
    flux = star_flux(wave, 0.0, rng, noise=0.01)
    err = np.full(wave.size, 0.01)
    flux[[1000, 3000]] = [4.0, 0.0]  # a cosmic ray and a dead pixel
    flux[5000] = np.nan
    err[7000] = np.inf  # an unusable error (ivar 0) under finite flux
    out, mask, error = prepare_spectrum(Spectrum(wave, flux, err, {}), 0.0, setup, PrepareSettings(),
                                        with_error=True)
    assert error.dtype == np.float32 and error.shape == out.shape
    bad = (mask & (MASK_REPAIRED | MASK_NAN)) != 0
    assert bad.sum() >= 3 and np.isnan(error[bad]).all()
    assert np.isnan(error[(mask & MASK_UNCOVERED) != 0]).all() and np.count_nonzero(mask & MASK_UNCOVERED) == 41
    assert np.isnan(error[np.argmin(np.abs(setup.wavelength - wave[7000]))])
    good = np.isfinite(error)
    assert good.sum() > 0.98 * setup.n_pixels and np.all(mask[good] == 0)
    # 0.1-Å bins over 0.05-Å pixels of σ 0.01: 0.0061–0.0071 depending on where the bin edges fall
    assert 0.0060 < np.median(error[good]) < 0.0072
    # a file without an error spectrum: all NaN, the flux as before
    out2, mask2, e2 = prepare_spectrum(Spectrum(wave, flux, None, {}), 0.0, setup, PrepareSettings(), with_error=True)
    assert np.isnan(e2).all() and np.array_equal(out2, prepare_spectrum(Spectrum(wave, flux, None, {}), 0.0, setup,
                                                                       PrepareSettings())[0])
    # resolution matching lowers σ (the LSF averages pixels); the error stays finite next to a repaired pixel
    out3, mask3, e3 = prepare_spectrum(Spectrum(wave, flux, err, {}), 0.0, setup, PrepareSettings(input_resolution=40000),
                                       with_error=True)
    assert np.nanmedian(e3) < 0.5 * np.nanmedian(error)
    assert np.isnan(e3[(mask3 & (MASK_REPAIRED | MASK_NAN)) != 0]).all()


def test_prepare_writes_error_and_no_errors_skips_it(tmp_path):
    survey = mixed_format_survey(tmp_path)
    path, n, _ = prepare(survey / "catalogue.fits", survey / "spectra", tmp_path / "ds.h5", progress=False)
    ds = Dataset(path)
    assert ds.has_error and n == 5
    error = ds.read_error()
    assert error.shape == (5, GRID.n_pixels) and error.dtype == np.float32
    cn = list(ds.catalogue["CNAME"])
    sl = GRID.slices()
    # GES FITS files with an error of 0.005 per 0.05-Å pixel; good4 is text (HR10) + Phase 3 without errors
    for row in (cn.index("good2"), cn.index("good3")):
        assert 0.0030 < np.nanmedian(error[row, sl["HR10"]]) < 0.0043  # 0.06-Å bins: 0.71–0.85 σ
        assert 0.0030 < np.nanmedian(error[row, sl["HR21"]]) < 0.0036  # 0.1-Å bins: 0.61–0.71 σ
    assert np.isnan(error[cn.index("good4")]).all()
    assert "no error spectrum" in ds.catalogue["PREP_NOTES"][cn.index("good4")]
    assert np.isnan(error[cn.index("nohr21"), sl["HR21"]]).all()  # the missing setup
    np.testing.assert_array_equal(ds.read_error([3, 1]), error[[3, 1]])
    # --no-errors: no /error, and everything downstream reads the dataset as before
    from starlabel.cli import main

    assert main(["prepare", str(survey / "catalogue.fits"), str(survey / "spectra"), "--out",
                 str(tmp_path / "ne.h5"), "--no-errors", "--no-progress"]) == 0
    ne = Dataset(tmp_path / "ne.h5")
    assert not ne.has_error and ne.read_error() is None and ne.settings["errors"] is False
    with h5py.File(tmp_path / "ne.h5") as f:
        assert "error" not in f
    np.testing.assert_array_equal(ne.read(), ds.read())
    assert [len(c) for c in ne.iter_chunks(2, mask=True, error=True)][0] == 4


@pytest.fixture(scope="module")
def mock_casu(tmp_path_factory):
    """A small mock Gaia-ESO survey (CASU products at 0.05 Å, one-layer engine), prepared."""
    from starlabel.mock.survey import make_survey

    d = tmp_path_factory.mktemp("casu")
    make_survey(d / "s", 12, seed=6, workers=1, progress=False, engine_name="onelayer")
    prepare(d / "s" / "catalogue.fits", d / "s" / "spectra", d / "ds.h5", progress=False)
    return d


def test_mock_casu_error_matches_the_injected_noise(mock_casu):
    """The mock draws noise σ = √flux / scale with median σ = 1/SNR_<setup> per 0.05-Å pixel and writes it
    as normalised_ivar. Prepared: (1) median /error × SNR is the median rebinning factor of that star's
    pixels onto the grid (0.77 HR10, 0.62–0.71 HR21) within 10 %; (2) the prepared flux minus the same star
    rendered without noise and prepared alike, divided by /error, has unit scatter within 10 %."""
    from starlabel.io.tables import index_of
    from starlabel.mock import survey as ms

    ds = Dataset(mock_casu / "ds.h5")
    truth = Table.read(mock_casu / "s" / "truth.fits")
    cn = np.asarray(ds.catalogue["CNAME"]).astype(str)
    t = truth[index_of(cn, np.asarray(truth["CNAME"]).astype(str))]
    plan, _ = ms.plan_survey(12, 6)  # the rows the survey was rendered from (same seed)
    jobs = {j["cname"]: j for j in ms._jobs(plan, 6, mock_casu / "s" / "spectra", "onelayer")}
    flux, mask = ds.read(mask=True)
    error = ds.read_error()
    ratios, z = {s: [] for s in GRID.names}, []
    for i, c in enumerate(cn):
        if t["PATHOLOGICAL"][i]:
            continue
        job = jobs[c]
        noiseless = ms.render_star({**job, "snr_HR10": 1e9, "snr_HR21": 1e9})
        for s, sl in GRID.slices().items():
            if s not in noiseless:
                assert np.isnan(error[i, sl]).all()
                continue
            wave = ms.native_wavelength(s) / (1 + ds.catalogue["VRAD_USED"][i] / 299792.458)
            ok = (mask[i, sl] == 0) & np.isfinite(error[i, sl])
            assert ok.mean() > 0.95
            factor = np.sqrt(resample_variance(wave, np.ones(wave.size), GRID.setup(s).wavelength))
            ratios[s].append(np.median(error[i, sl][ok] * t[f"SNR_{s}"][i]) / np.median(factor[ok]))
            clean, _ = resample(wave, noiseless[s][0].astype(float), GRID.setup(s).wavelength)
            z.append(((flux[i, sl] - clean) / error[i, sl])[ok])
    for s in GRID.names:
        assert len(ratios[s]) >= 8 and np.median(ratios[s]) == pytest.approx(1.0, abs=0.1), (s, ratios[s])
    assert np.std(np.concatenate(z)) == pytest.approx(1.0, abs=0.1)


def test_select_carries_error_and_reads_datasets_without_it(mock_casu, tmp_path):
    from starlabel.stages.select import select

    ds = Dataset(mock_casu / "ds.h5")
    sets, _ = select(ds.path, tmp_path / "sets.h5")
    s = Dataset(sets)
    cn = list(ds.catalogue["CNAME"])
    rows = [cn.index(c) for c in s.catalogue["CNAME"]]
    assert s.has_error and 0 < len(rows) <= len(ds)
    np.testing.assert_array_equal(s.read_error(), ds.read_error()[rows])
    np.testing.assert_array_equal(s.read(), ds.read()[rows])
    flux, mask = ds.read(mask=True)
    write_dataset(tmp_path / "old.h5", GRID, flux, mask, ds.catalogue)  # a dataset from before /error
    old = Dataset(select(tmp_path / "old.h5", tmp_path / "sets_old.h5")[0])
    assert not old.has_error and old.read_error() is None and len(old) == len(s)


def test_domain_score_uses_the_dataset_error(mock_casu, tmp_path):
    """predict's domain χ² reads /error (attr sigma 'dataset /error'): the one-layer model at the true labels
    leaves clean mock spectra at χ² ≈ 1; a dataset without /error falls back to DER_SNR."""
    from starlabel.evaluation import domain
    from starlabel.io.tables import index_of

    ds = Dataset(mock_casu / "ds.h5")
    truth = Table.read(mock_casu / "s" / "truth.fits")
    t = truth[index_of(np.asarray(ds.catalogue["CNAME"]).astype(str), np.asarray(truth["CNAME"]).astype(str))]
    labels = Table({k: np.asarray(t[k], float) for k in ("TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE", "ALPHA_FE")})
    labels["VSINI"] = np.asarray(ds.catalogue["VSINI"], float)
    cols = domain.domain_check(ds, labels, np.arange(len(ds)), tmp_path / "m.h5", engine="onelayer")
    with h5py.File(tmp_path / "m.h5") as f:
        assert f.attrs["sigma"] == "dataset /error"
    clean = ~np.asarray(t["PATHOLOGICAL"], bool)
    chi2 = np.asarray(cols["DOMAIN_CHI2"])
    assert 0.8 < np.median(chi2[clean]) < 1.3 and not np.asarray(cols["DOMAIN_FLAG"])[clean].any()
    # without /error (an old dataset): DER_SNR, and a spectrum row whose /error is all NaN falls back too
    flux, mask = ds.read(mask=True)
    write_dataset(tmp_path / "old.h5", GRID, flux, mask, ds.catalogue)
    domain.domain_check(tmp_path / "old.h5", labels, np.arange(len(ds)), tmp_path / "m2.h5", engine="onelayer")
    with h5py.File(tmp_path / "m2.h5") as f:
        assert f.attrs["sigma"].startswith("DER_SNR")
    error = ds.read_error()
    error[0] = np.nan
    write_dataset(tmp_path / "part.h5", GRID, flux, mask, ds.catalogue, error=error)
    c3 = domain.domain_check(tmp_path / "part.h5", labels, np.arange(len(ds)), tmp_path / "m3.h5", engine="onelayer")
    assert np.isfinite(c3["DOMAIN_CHI2"][0]) and np.allclose(c3["DOMAIN_CHI2"][1:], cols["DOMAIN_CHI2"][1:])
    with h5py.File(tmp_path / "m3.h5") as f:
        assert f.attrs["sigma"].startswith("dataset /error (DER_SNR for ")


def test_real_ges_product_error_gives_its_velclass_snr(shared_data, tmp_path):
    """The real GES HR21 product (CASU DR1; normalised_ivar rescaled from final_ivar by the reader): its
    /error on the 0.1-Å grid, scaled back by the rebinning factor, gives the S/N its velclass states
    (58.6 per 0.05-Å pixel) within 10 %; on the grid itself S/N ≈ 92."""
    from starlabel.io.spectra import read_spectrum
    from starlabel.mock import sim_to_real as s2r

    grid = Grid((HR21,))
    cname = s2r.GES_FILE.split("_")[2]
    prepare(Table({"CNAME": [cname], "VRAD": [np.nan]}), shared_data / "spectra" / "ges_giraffe", tmp_path / "g.h5",
            PrepareSettings(grid=grid), progress=False)
    ds = Dataset(tmp_path / "g.h5")
    flux, mask = ds.read([0], mask=True)
    error = ds.read_error([0])[0]
    ok = (mask[0] == 0) & np.isfinite(error)
    assert ok.mean() > 0.98
    spec = read_spectrum(shared_data / "spectra" / s2r.GES_FILE)
    wave = spec.wave / (1 + ds.catalogue["VRAD_USED"][0] / 299792.458)
    factor = np.sqrt(resample_variance(wave, np.ones(wave.size), grid.wavelength))
    snr = np.median(flux[0][ok] / error[ok] * factor[ok])
    assert snr == pytest.approx(58.6, rel=0.1)
    assert 80 < np.median(flux[0][ok] / error[ok]) < 105


def test_predict_model_spectra_reads_error_of_the_dataset_it_labels(toy_bundle, tmp_path):
    """`predict --model-spectra` on a dataset with /error (toy spectra, noise 0.01): the model file says
    σ came from /error, and the χ² differs from the same dataset without it (DER_SNR)."""
    from starlabel.cli import main
    from starlabel.evaluation import domain
    from toys import make_sets

    data = Dataset(make_sets(tmp_path / "obs.h5", n=6, seed=3, n_observed=6))
    flux, mask = data.read(mask=True)
    write_dataset(tmp_path / "obs_err.h5", data.grid, flux, mask, data.catalogue, error=np.full(flux.shape, 0.01, "f4"))
    chi2 = {}
    for name in ("obs.h5", "obs_err.h5"):
        out = tmp_path / f"{name}.fits"
        assert main(["predict", str(toy_bundle), str(tmp_path / name), "--out", str(out), "--model-spectra",
                     "onelayer", "--no-progress"]) == 0
        with h5py.File(domain.model_spectra_path(out)) as f:
            assert f.attrs["sigma"] == ("dataset /error" if name == "obs_err.h5" else
                                        "DER_SNR per setup x sqrt(model flux)")
        chi2[name] = np.asarray(Table.read(out)["DOMAIN_CHI2"], float)
    assert np.all(np.isfinite(chi2["obs_err.h5"])) and not np.allclose(chi2["obs.h5"], chi2["obs_err.h5"])
