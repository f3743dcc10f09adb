"""File format of the mock survey (docs/contracts.md) on a small survey."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from starlabel.mock.survey import make_survey, native_wavelength

CATALOGUE_COLUMNS = ("CNAME GES_FLD GES_TYPE SETUP SNR TEFF E_TEFF LOGG E_LOGG FEH E_FEH MG1 E_MG1 AL1 E_AL1 "
                     "FE1 E_FE1 VRAD E_VRAD VSINI TECH PECULI RA DEC PARALLAX PMRA PMDEC").split()
TRUTH_COLUMNS = ("CNAME POP TEFF LOGG FE_H MG_FE AL_FE FE1 MG1 AL1 VRAD VSINI DEFECTS PATHOLOGICAL").split()


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    out = tmp_path_factory.mktemp("mock")
    make_survey(out, 30, seed=5, workers=1, progress=False)
    return out


def _str(col):
    return np.array([str(v).strip() if v is not np.ma.masked else "" for v in col])


def test_catalogue_and_truth_columns(survey):
    cat = Table.read(survey / "catalogue.fits")
    truth = Table.read(survey / "truth.fits")
    assert len(cat) == len(truth) == 30
    assert set(CATALOGUE_COLUMNS) <= set(cat.colnames)
    assert set(TRUTH_COLUMNS) <= set(truth.colnames)
    assert list(_str(cat["CNAME"])) == list(_str(truth["CNAME"]))
    assert set(_str(cat["SETUP"])) <= {"HR10|HR21", "HR10", "HR21"}
    assert np.all(np.asarray(cat["SNR"]) > 0)
    # catalogue = truth + scatter of the order of the quoted error
    z = (np.asarray(cat["TEFF"], float) - truth["TEFF"]) / np.asarray(cat["E_TEFF"], float)
    assert np.nanstd(z) < 2.0
    assert np.allclose(truth["FE1"], truth["FE_H"] + 7.45)
    assert set(_str(truth["POP"])) <= {"thin", "thick", "halo", "gc", "benchmark"}
    json.loads((survey / "synth.json").read_text())


def test_every_catalogue_setup_has_a_spectrum_in_the_ges_casu_format(survey):
    """Files as Gaia-ESO delivers them: gir_<CNAME>_<H-code>.fit, the CASU extensions and keywords."""
    from starlabel.io.spectra import read_spectrum
    from starlabel.mock.survey import continuum_counts, spectrum_name

    cat = Table.read(survey / "catalogue.fits")
    truth = Table.read(survey / "truth.fits")
    files = sorted(p.name for p in (survey / "spectra").iterdir())
    expected = sorted(spectrum_name(c, s) for c, setups in zip(_str(cat["CNAME"]), _str(cat["SETUP"]))
                      for s in setups.split("|"))
    assert files == expected and all(f.startswith("gir_") and f.endswith((".fit")) for f in files)
    code = {"HR10": "H548.8", "HR21": "H875.7"}
    for c, setups, snr, vrad in list(zip(_str(cat["CNAME"]), _str(cat["SETUP"]), cat["SNR"], truth["VRAD"]))[:6]:
        for s in setups.split("|"):
            path = survey / "spectra" / f"gir_{c}_{code[s]}.fit"
            with fits.open(path) as h:
                h.verify("exception")
                assert [x.name.lower() for x in h] == ["final_spectrum", "final_ivar", "normalised_spectrum",
                                                       "normalised_ivar", "velclass"]
                hdr, final, norm = h[0].header, h["final_spectrum"].data, h["normalised_spectrum"].data
                assert norm.dtype == np.dtype(">f4") and norm.ndim == 1 and final.shape == norm.shape
                assert hdr["ESO INS FILT NAME"] == s and hdr["ESO INS EXP MODE"] == code[s]
                assert "CNAME" not in hdr and "OBJECT" in hdr and hdr["INSTRUME"] == "GIRAFFE"
                assert hdr["CTYPE1"] == "AWAV" and hdr["CUNIT1"] == "Angstrom" and hdr["CRPIX1"] == 1
                wave = hdr["CRVAL1"] + hdr["CD1_1"] * (np.arange(norm.size) + 1 - hdr["CRPIX1"])
                assert np.allclose(wave, native_wavelength(s)) and hdr["CD1_1"] == pytest.approx(0.05)
                lo, hi = {"HR10": (5339, 5619), "HR21": (8484, 9001)}[s]
                assert wave[0] == pytest.approx(lo) and wave[-1] == pytest.approx(hi)
                assert 0.5 < np.median(norm) < 1.05  # continuum-normalised
                cont = continuum_counts(norm.size, hdr["SNR"])
                assert np.allclose(final, norm * cont, rtol=1e-5)  # final = normalised × continuum [counts]
                # ivars consistent: normalised_ivar = final_ivar × continuum²
                assert np.allclose(h["normalised_ivar"].data, h["final_ivar"].data * cont**2, rtol=1e-4)
                vel = h["velclass"].data
                assert vel["Cname"][0] == c and abs(vel["VEL"][0] - vrad) < 1.5
            spec = read_spectrum(path)
            assert spec.cname == c and spec.setup == s and spec.normalised is True
            assert np.allclose(spec.flux, norm) and abs(spec.vrad - vrad) < 1.5
            assert np.median(spec.flux / spec.error) == pytest.approx(float(snr), rel=0.5)


def test_same_seed_same_survey_and_resume(tmp_path, survey):
    a = tmp_path / "a"
    make_survey(a, 6, seed=2, workers=2, progress=False)
    b = tmp_path / "b"
    make_survey(b, 6, seed=2, workers=1, progress=False)
    for p in (a / "spectra").iterdir():
        assert p.read_bytes() == (b / "spectra" / p.name).read_bytes()
    # resume: a removed spectrum is re-created identically; other settings are refused
    victim = sorted((a / "spectra").iterdir())[0]
    data = victim.read_bytes()
    victim.unlink()
    make_survey(a, 6, seed=2, workers=1, progress=False)
    assert victim.read_bytes() == data
    with pytest.raises(ValueError, match="already holds"):
        make_survey(a, 6, seed=3, workers=1, progress=False)


def test_defects_are_recorded(tmp_path):
    """Pathological spectra are planted at a few per cent and recorded in truth.fits."""
    from starlabel.mock.survey import plan_survey

    truth, cat = plan_survey(3000, seed=9)
    path = np.asarray(truth["PATHOLOGICAL"])
    assert 0.02 < path.mean() < 0.08
    defects = ",".join(truth["DEFECTS"])
    for name in ("emission", "bad_norm", "fast_rotator", "flagged", "missing_setup"):
        assert name in defects
    flagged = np.array(["flagged" in d for d in truth["DEFECTS"]])
    has_flag = (_str(cat["TECH"]) != "") | (_str(cat["PECULI"]) != "")
    assert np.array_equal(flagged, has_flag)
    fast = np.array(["fast_rotator" in d for d in truth["DEFECTS"]])
    assert np.all(truth["VSINI"][fast] >= 100) and np.all(cat["VSINI"][fast] > 20)
    # realistic share fails the paper's S/N cut; errors grow as S/N falls
    snr = np.asarray(cat["SNR"])
    assert 0.25 < np.mean(snr < 30) < 0.7 and snr.min() >= 4 and np.percentile(snr, 99) > 150
    assert np.corrcoef(1 / snr, cat["E_TEFF"])[0, 1] > 0.7
