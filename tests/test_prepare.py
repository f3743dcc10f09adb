"""prepare: cleaning, readers, rejects, the stage end to end on a tiny hand-made survey."""

import gzip

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from starlabel.cli import main
from starlabel.grid import Grid
from starlabel.io.catalogue import CatalogueError, read_catalogue
from starlabel.io.dataset import MASK_MISSING_SETUP, MASK_NAN, MASK_REPAIRED, MASK_UNCOVERED, Dataset
from starlabel.io.spectra import (Spectrum, SpectrumError, air_to_vac, read_spectrum, vac_to_air,
                                  write_ges_fits, write_phase3_fits)
from starlabel.stages.prepare import PrepareSettings, fit_continuum, prepare, prepare_spectrum, repair

from toys import mixed_format_survey, native, star_flux


# ---------------------------------------------------------------- cleaning

def test_spikes_and_zeros_are_repaired_and_masked():
    rng = np.random.default_rng(1)
    wave = native("HR10")
    flux = star_flux(wave, 0.0, rng, noise=0.01)
    flux[[400, 2000, 4000]] = [3.0, 1.5, 8.0]  # cosmic rays
    flux[[500, 501, 3000]] = 0.0  # dead pixels
    flux[1234] = np.nan
    fixed, repaired, bad = repair(flux, sigma=5.0)
    med = np.nanmedian(flux[flux != 0])
    assert set(np.flatnonzero(repaired)) == {400, 2000, 4000, 500, 501, 3000}
    assert np.flatnonzero(bad).tolist() == [1234]
    assert np.allclose(fixed[[400, 500, 1234]], med, atol=1e-3)
    assert fixed.max() < 1.1 and np.isfinite(fixed).all()
    # on the grid: the pixels that overlap a repaired input pixel carry the flag
    setup = Grid.default().setup("HR10")
    out, mask = prepare_spectrum(Spectrum(wave, flux, None, {}), 0.0, setup, PrepareSettings())
    for w in (wave[400], wave[500], wave[4000]):
        assert mask[np.argmin(np.abs(setup.wavelength - w))] & MASK_REPAIRED
    assert mask[np.argmin(np.abs(setup.wavelength - wave[1234]))] & MASK_NAN
    assert (mask & MASK_REPAIRED).sum() <= 2 * 6 and out.max() < 1.1
    # a deep absorption line is not a spike, and noisy pixels with large quoted errors are kept
    assert not repaired[np.argmin(np.abs(wave - 5528.41))]
    err = np.full(wave.size, 0.01)
    err[2000] = 0.2
    assert not repair(flux, err)[1][2000]


def test_uncovered_edge_is_filled_and_masked_or_rejected():
    setup = Grid.default().setup("HR21")
    wave = native("HR21")  # starts at 8484 Å, 41 grid pixels after the paper's 8480 Å edge
    out, mask = prepare_spectrum(Spectrum(wave, np.ones_like(wave), None, {}), 0.0, setup, PrepareSettings())
    assert np.count_nonzero(mask & MASK_UNCOVERED) == 41 and np.all(out[:41] == 1.0)
    from starlabel.stages.prepare import Reject

    with pytest.raises(Reject, match="misses"):
        prepare_spectrum(Spectrum(wave, np.ones_like(wave), None, {}), -800.0, setup, PrepareSettings())


def test_continuum_normaliser_recovers_a_sloped_continuum():
    rng = np.random.default_rng(2)
    wave = native("HR21")
    cont = 3e-3 * (1 + 2e-4 * (wave - 8700) - 3e-7 * (wave - 8700) ** 2)
    flux = star_flux(wave, 0.0, rng, noise=0.003) * cont
    fit = fit_continuum(wave, flux)
    assert np.median(np.abs(fit / cont - 1)) < 0.005


# ---------------------------------------------------------------- readers

def test_reader_roundtrip_ges_fits(tmp_path):
    wave = native("HR10")
    flux = np.linspace(0.9, 1.1, wave.size)
    p = tmp_path / "A_HR10.fits"
    write_ges_fits(p, wave[0], 0.05, flux, np.full(wave.size, 0.02), dict(CNAME="A", SETUP="HR10", SNR=50.0))
    s = read_spectrum(p)
    assert np.allclose(s.wave, wave) and np.allclose(s.flux, flux, atol=1e-6)
    assert np.allclose(s.error, 0.02) and s.header["CNAME"] == "A" and s.header["SNR"] == 50.0
    # the same through astropy (gzip path) and with an IVAR extension instead of ERROR
    gz = tmp_path / "A_HR10.fits.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert np.allclose(read_spectrum(gz).flux, s.flux)
    hdul = fits.open(p)
    hdul[1].data = (1 / 0.02**2) * np.ones(wave.size, np.float32)
    hdul[1].name = "IVAR"
    hdul.writeto(tmp_path / "ivar.fits")
    assert np.allclose(read_spectrum(tmp_path / "ivar.fits").error, 0.02, rtol=1e-5)


def test_reader_log_linear_wcs_and_nm_units(tmp_path):
    n = 1000
    loglam = np.log10(5400.0) + 1e-5 * np.arange(n)
    h = fits.Header({"CRVAL1": loglam[0], "CDELT1": 1e-5, "CRPIX1": 1, "DC-FLAG": 1})
    fits.PrimaryHDU(np.ones(n, np.float32), h).writeto(tmp_path / "log.fits")
    assert np.allclose(read_spectrum(tmp_path / "log.fits").wave, 10**loglam)
    h = fits.Header({"CRVAL1": 534.0, "CDELT1": 0.005, "CRPIX1": 1, "CUNIT1": "nm", "CTYPE1": "AWAV"})
    fits.PrimaryHDU(np.ones(n, np.float32), h).writeto(tmp_path / "nm.fits")
    assert read_spectrum(tmp_path / "nm.fits").wave[1] == pytest.approx(5340.05)


def test_reader_roundtrip_phase3_table(tmp_path):
    wave = native("HR21")
    flux = 5e-15 * np.ones(wave.size)
    write_phase3_fits(tmp_path / "p3.fits", wave / 10, flux, flux / 100, wave_unit="nm")
    s = read_spectrum(tmp_path / "p3.fits")
    assert np.allclose(s.wave, wave) and np.allclose(s.flux, flux) and np.allclose(s.error, flux / 100)


def test_reader_roundtrip_text_and_vacuum(tmp_path):
    wave = native("HR10")
    np.savetxt(tmp_path / "two.txt", np.c_[wave, np.ones(wave.size)], header="wave flux")
    np.savetxt(tmp_path / "three.csv", np.c_[wave, np.ones(wave.size), np.full(wave.size, 0.1)], delimiter=",")
    s2, s3 = read_spectrum(tmp_path / "two.txt"), read_spectrum(tmp_path / "three.csv")
    assert np.allclose(s2.wave, wave) and s2.error is None and np.allclose(s3.error, 0.1)
    # Ca II 8542.09 Å in air is 8544.44 Å in vacuum (NIST); the conversion inverts
    assert air_to_vac(8542.09) == pytest.approx(8544.44, abs=0.01)
    assert vac_to_air(air_to_vac(wave)) == pytest.approx(wave, abs=1e-6)


def test_reader_errors_name_the_file(tmp_path):
    (tmp_path / "junk.fits").write_bytes(b"not a fits file at all" * 200)
    with pytest.raises(SpectrumError, match="junk.fits"):
        read_spectrum(tmp_path / "junk.fits")
    fits.PrimaryHDU(np.ones(10, np.float32)).writeto(tmp_path / "nowcs.fits")
    with pytest.raises(SpectrumError, match="nowcs.fits.*CRVAL1"):
        read_spectrum(tmp_path / "nowcs.fits")


def test_catalogue_reader_cleans_and_complains(tmp_path):
    t = Table({"cname": [b"A ", b"B"], "Setup": ["HR10|HR21", "HR10"],
               "VRAD": np.ma.masked_array([1.0, 2.0], [False, True]), "N": np.ma.masked_array([1, 2], [True, False])})
    t.write(tmp_path / "c.fits")
    c = read_catalogue(tmp_path / "c.fits", required=("CNAME", "SETUP", "VRAD"))
    assert c["CNAME"].tolist() == ["A", "B"] and np.isnan(c["VRAD"][1]) and np.isnan(c["N"][0])
    Table({"CNAME": ["A"]}).write(tmp_path / "c.csv")
    with pytest.raises(CatalogueError, match=r"c\.csv lacks columns SETUP, VRAD"):
        read_catalogue(tmp_path / "c.csv", required=("CNAME", "SETUP", "VRAD"))


# ---------------------------------------------------------------- the stage

@pytest.fixture
def survey(tmp_path):
    return mixed_format_survey(tmp_path)


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_survey_with_rejects(survey, workers):
    out = survey / "ds.h5"
    settings = PrepareSettings(workers=workers, chunk=3)
    path, n, rejects = prepare(survey / "catalogue.fits", survey / "spectra", out, settings, progress=False)
    ds = Dataset(path)
    # the star without HR21 is kept, its HR21 pixels filled with 1 and flagged MASK_MISSING_SETUP
    assert n == 5 and ds.catalogue["CNAME"].tolist() == ["good1", "good2", "good3", "good4", "nohr21"]
    assert ds.catalogue["TEFF"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert ds.catalogue["MISSING_SETUP"].tolist() == ["", "", "", "", "HR21"]
    assert ds.catalogue["VRAD_SOURCE"].tolist() == ["catalogue"] * 5
    assert ds.catalogue["VRAD_USED"].tolist() == [12.0, -80.0, 150.0, 0.0, 5.0]
    flux, mask = ds.read(mask=True)
    hr21 = ds.grid.slices()["HR21"]
    assert np.all(mask[4, hr21] == MASK_MISSING_SETUP) and np.all(flux[4, hr21] == 1.0)
    assert not np.any(mask[:4] & MASK_MISSING_SETUP) and not np.any(mask[4, ds.grid.slices()["HR10"]] & MASK_MISSING_SETUP)
    assert ds.n_pixels == 8669 and np.isfinite(ds.read()).all()
    assert set(rejects["CNAME"]) == {"corrupt", "nans", "novrad", "good1"}
    reason = {c: " | ".join(ds.rejects["REASON"][ds.rejects["CNAME"] == c]) for c in set(rejects["CNAME"])}
    assert "corrupt_HR10.fits" in reason["corrupt"] and "nans_HR10.fits" in reason["nans"]
    assert "NaN" in reason["nans"] and "VRAD" in reason["novrad"] and "duplicate" in reason["good1"]
    # lines are back at their rest wavelengths whatever the star's VRAD
    flux, wave = ds.read(), ds.wavelength
    for row in range(4):
        for line in (5528.41, 8542.09):
            w = np.abs(wave - line) < 1.0
            a = 1 - flux[row, w]
            assert np.sum(wave[w] * a) / np.sum(a) == pytest.approx(line, abs=0.01)
    assert ds.settings["workers"] == workers and Grid.from_json(ds.settings["grid"]) == Grid.default()


def test_prepare_missing_setup_reject_mode(survey):
    """missing_setups='reject' is the paper's rule: a star without one setup is left out, with the reason."""
    path, n, rejects = prepare(survey / "catalogue.fits", survey / "spectra", survey / "r.h5",
                               PrepareSettings(missing_setups="reject"), progress=False)
    assert n == 4 and "nohr21" not in Dataset(path).catalogue["CNAME"]
    reason = " | ".join(rejects["REASON"][rejects["CNAME"] == "nohr21"])
    assert "no spectrum file nohr21_HR21" in reason and "for setup HR21" in reason


def test_prepare_cli_custom_grid(survey, capsys):
    # a grid segment of another name is read from <CNAME>_<NAME> files, like HR10/HR21
    for name in ("good1", "good2", "good3"):
        (survey / "spectra" / f"{name}_CAT.fits").write_bytes((survey / "spectra" / f"{name}_HR21.fits").read_bytes())
    out = survey / "hr10.h5"
    rc = main(["prepare", str(survey / "catalogue.fits"), str(survey / "spectra"), "--out", str(out),
               "--grid", "HR10,CAT:8490:8550:0.2", "--no-progress"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    ds = Dataset(out)
    assert ds.grid.names == ["HR10", "CAT"] and ds.n_pixels == 4168 + 301
    # good4 and nohr21 have no <CNAME>_CAT file: kept with CAT masked (a missing setup)
    assert ds.catalogue["CNAME"].tolist() == ["good1", "good2", "good3", "good4", "nohr21"]
    assert ds.catalogue["MISSING_SETUP"].tolist() == ["", "", "", "CAT", "CAT"]


def test_prepare_missing_column_is_a_clear_error(tmp_path):
    Table({"NAME": ["a"], "SETUP": ["HR10"]}).write(tmp_path / "cat.csv")
    (tmp_path / "spectra").mkdir()
    rc = main(["prepare", str(tmp_path / "cat.csv"), str(tmp_path / "spectra"), "--out", str(tmp_path / "o.h5")])
    assert rc == 2 and not (tmp_path / "o.h5").exists()


def test_prepare_normalises_unnormalised_phase3_spectra(tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "spectra").mkdir()
    for setup in ("HR10", "HR21"):
        wave = native(setup)
        cont = 2e-15 * (1 + 1e-4 * (wave - wave.mean()))
        write_phase3_fits(tmp_path / "spectra" / f"S_{setup}.fits", wave / 10, star_flux(wave, 30.0, rng) * cont,
                          wave_unit="nm")
    Table({"CNAME": ["S"], "SETUP": ["HR10|HR21"], "VRAD": [30.0]}).write(tmp_path / "cat.fits")
    path, n, _ = prepare(tmp_path / "cat.fits", tmp_path / "spectra", tmp_path / "ds.h5",
                         PrepareSettings(normalise=True), progress=False)
    flux = Dataset(path).read()[0]
    assert n == 1 and np.median(flux) == pytest.approx(1.0, abs=0.01)
