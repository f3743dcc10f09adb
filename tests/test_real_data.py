"""Real reference data (../shared/data): GES catalogues and the solar spectrum through `prepare`.

Solar spectra: UVES (Blanco-Cuaresma et al. 2014) and SAO2010 (Chance & Kurucz 2010).
Catalogues: Gaia-ESO iDR5 benchmarks (Heiter et al. 2015) and the iDR5 × CoRoT master list.
"""

import numpy as np
import pytest
from astropy.table import Table

from starlabel.io.catalogue import PREPARE_COLUMNS, CatalogueError, read_catalogue
from starlabel.io.dataset import Dataset
from starlabel.io.spectra import vac_to_air
from starlabel.stages.prepare import PrepareSettings, fit_continuum, prepare

LINES = {"Mg I": 5528.41, "Ca II": 8542.09}  # air wavelengths [Å]


def test_read_ges_corot_masterlist(shared_data):
    t = read_catalogue(shared_data / "catalogues" / "ges_corot_masterlist.fits", required=PREPARE_COLUMNS)
    assert len(t) == 1745 and (t["SETUP"] == "GIRAFFE").sum() == 1624
    assert t["CNAME"].dtype.kind == "U" and len(t["CNAME"][0]) == 16
    # VRAD is empty (masked) in every row of this release: masked floats must come back as NaN
    assert t["VRAD"].dtype.kind == "f" and np.isnan(t["VRAD"]).all() and np.isfinite(t["TEFF"]).all()
    assert {"TEFF", "E_TEFF", "LOGG", "FEH", "MG1", "AL1", "FE1", "SNR", "VSINI", "TECH", "PECULI"} <= set(t.colnames)


def test_prepare_real_catalogue_without_spectra_rejects_every_row(shared_data, tmp_path):
    """Real GES rows (empty VRAD, UVES setups, duplicate CNAMEs) all land in rejects, nothing crashes."""
    (tmp_path / "spectra").mkdir()
    path, n, rejects = prepare(shared_data / "catalogues" / "ges_corot_masterlist.fits", tmp_path / "spectra",
                               tmp_path / "ds.h5", PrepareSettings(), progress=False)
    ds = Dataset(path)
    assert n == 0 == len(ds) and ds.n_pixels == 8669
    cat = read_catalogue(shared_data / "catalogues" / "ges_corot_masterlist.fits")
    assert set(ds.rejects["CNAME"]) == set(cat["CNAME"])
    # every UVES row (121, incl. the UVES twin of 33 stars with a GIRAFFE row too) is skipped as another
    # instrument; each GIRAFFE row is rejected once per grid setup for want of a file
    reasons = np.asarray(ds.rejects["REASON"]).astype(str)
    other = np.char.find(reasons, "other instrument") >= 0
    nofile = np.char.find(reasons, "no spectrum file") >= 0
    assert other.sum() == (cat["SETUP"] == "UVES").sum() == 121
    assert nofile.sum() == 2 * (cat["SETUP"] == "GIRAFFE").sum() and (other | nofile).all()


def test_read_ges_benchmarks(shared_data):
    path = shared_data / "catalogues" / "ges_idr5_benchmarks.fits"
    t = read_catalogue(path)
    assert len(t) == 59 and "18_Sco" in t["GES_FLD"]
    assert t["TEFF"].dtype.kind == "f" and np.isfinite(t["VRAD"]).sum() > 50
    with pytest.raises(CatalogueError, match="ges_idr5_benchmarks.fits lacks columns CNAME, SETUP"):
        read_catalogue(path, required=PREPARE_COLUMNS)


def gaussian_degrade(wave, flux, resolution, native_resolution=np.inf):
    """Convolve a uniformly sampled spectrum to `resolution` (Gaussian LSF at the centre)."""
    step = np.median(np.diff(wave))
    centre = np.median(wave)
    fwhm = centre * np.sqrt(1 / resolution**2 - 1 / native_resolution**2)
    sigma = fwhm / 2.3548 / step
    x = np.arange(-int(5 * sigma) - 1, int(5 * sigma) + 2)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return np.convolve(flux, kernel / kernel.sum(), mode="same")


def line_minimum(wave, flux, centre, half=0.6, n=5):
    """Wavelength of the minimum: parabola through the n lowest pixels near `centre`."""
    w = np.flatnonzero(np.abs(wave - centre) < half)
    i = w[np.argmin(flux[w])]
    k = slice(i - n // 2, i + n // 2 + 1)
    a, b, _ = np.polyfit(wave[k] - wave[i], flux[k], 2)
    return wave[i] - b / (2 * a)


@pytest.fixture(scope="module")
def sun_dataset(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sun")
    spectra = tmp / "spectra"
    spectra.mkdir()
    # HR10 from the UVES atlas (air, normalised), degraded to GIRAFFE HR10's R = 19 800
    uves = np.loadtxt(shared_data / "spectra" / "sun_uves_normalized_air.txt")
    uves = uves[(uves[:, 0] > 5330) & (uves[:, 0] < 5630)]
    np.savetxt(spectra / "SUN_HR10.txt", np.c_[uves[:, 0], gaussian_degrade(uves[:, 0], uves[:, 1], 19800, 47000)])
    # HR21 from SAO2010 (vacuum nm, irradiance): → air Å, R = 16 200, continuum-normalised by our fit
    sao = np.loadtxt(shared_data / "spectra" / "sun_sao2010_irradiance_vacuum.txt", comments="#")
    sao = sao[(sao[:, 0] > 846.0) & (sao[:, 0] < 902.0)]
    wave = vac_to_air(sao[:, 0] * 10.0)
    flux = gaussian_degrade(wave, sao[:, 1], 16200, 21000)[20:-20]
    wave = wave[20:-20]
    np.savetxt(spectra / "SUN_HR21.txt", np.c_[wave, flux / fit_continuum(wave, flux)])
    Table({"CNAME": ["SUN"], "SETUP": ["HR10|HR21"], "VRAD": [0.0]}).write(tmp / "cat.csv")
    path, n, rejects = prepare(tmp / "cat.csv", spectra, tmp / "sun.h5", PrepareSettings(), progress=False)
    assert n == 1 and len(rejects) == 0
    return Dataset(path)


@pytest.mark.parametrize("line", LINES)
def test_solar_line_minima_land_at_air_wavelengths(sun_dataset, line):
    flux, mask = sun_dataset.read(mask=True)
    wave = sun_dataset.wavelength
    assert flux.shape == (1, 8669) and np.isfinite(flux).all()
    assert line_minimum(wave, flux[0], LINES[line]) == pytest.approx(LINES[line], abs=0.05)


def test_solar_continuum_is_near_one(sun_dataset):
    flux = sun_dataset.read()[0]
    for name, sl in sun_dataset.grid.slices().items():
        assert np.percentile(flux[sl], 95) == pytest.approx(1.0, abs=0.03), name


# ---------------------------------------------------------------- a real Gaia-ESO CASU product
# gir_19235180+0048006_H875.7.fit: GES DR1 GIRAFFE HR21, CoRoT field star (from thibaultmerle/pspec)

GES_CNAME = "19235180+0048006"
CA_II = (8498.02, 8542.09, 8662.14)  # air rest wavelengths [Å]


@pytest.fixture(scope="module")
def ges_file(shared_data):
    return shared_data / "spectra" / "ges_giraffe" / f"gir_{GES_CNAME}_H875.7.fit"


def test_real_ges_product_is_read_from_its_normalised_extensions(ges_file, tmp_path):
    import gzip
    import warnings

    from astropy.io import fits

    from starlabel.io.spectra import pop_library_warnings, read_spectrum

    pop_library_warnings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may reach the user per file
        spec = read_spectrum(ges_file)
        (tmp_path / "g.fit.gz").write_bytes(gzip.compress(ges_file.read_bytes()))
        via_astropy = read_spectrum(tmp_path / "g.fit.gz")  # the astropy path (gzip)
    with fits.open(ges_file) as h:
        final, final_ivar, norm = (np.asarray(h[e].data, float) for e in
                                   ("final_spectrum", "final_ivar", "normalised_spectrum"))
    assert spec.cname == GES_CNAME and spec.setup == "HR21" and spec.normalised is True
    assert spec.vrad == pytest.approx(15.637, abs=1e-3)  # velclass VEL
    assert np.array_equal(spec.flux, norm) and spec.wave[0] == 8475.0 and spec.wave[-1] == pytest.approx(8982.0)
    # the error comes from the inverse variance: 1/sqrt(final_ivar) scaled by the continuum
    # (this CASU version's normalised_ivar is final_ivar × continuum, see io.spectra)
    assert np.allclose(spec.error, 1 / np.sqrt(final_ivar) * norm / final, rtol=1e-5)
    assert np.median(spec.flux / spec.error) == pytest.approx(58.6, rel=0.1)  # velclass S_N
    assert np.array_equal(via_astropy.flux, spec.flux) and np.allclose(via_astropy.error, spec.error)
    assert via_astropy.vrad == spec.vrad and via_astropy.cname == GES_CNAME
    assert any("CASU normalised_ivar" in k for k in pop_library_warnings())
    final_spec = read_spectrum(ges_file, product="final")
    assert final_spec.normalised is False and np.median(final_spec.flux) == pytest.approx(2029.6, rel=1e-3)
    assert np.allclose(final_spec.error, 1 / np.sqrt(final_ivar), rtol=1e-5)


@pytest.mark.parametrize("normalise", [False, True], ids=["normalised_spectrum", "final+--normalise"])
def test_real_ges_product_prepared_onto_hr21(ges_file, tmp_path, normalise, caplog):
    """Found by CNAME in its GES name, shifted by its velclass VEL (catalogue VRAD empty): Ca II at rest."""
    import logging

    from starlabel.grid import Grid

    spectra = tmp_path / "spectra"
    spectra.mkdir()
    (spectra / ges_file.name).symlink_to(ges_file)
    Table({"CNAME": [GES_CNAME], "SETUP": ["GIRAFFE"], "VRAD": np.ma.masked_array([0.0], [True])}).write(
        tmp_path / "cat.fits")
    with caplog.at_level(logging.INFO, logger="starlabel.stages.prepare"):
        path, n, rejects = prepare(tmp_path / "cat.fits", spectra, tmp_path / "ds.h5",
                                   PrepareSettings(grid=Grid.from_spec("HR21"), normalise=normalise), progress=False)
    # the CASU ivar quirk is summarised once per run, not per file (only the normalised product has it)
    quirk = [r for r in caplog.records if "CASU normalised_ivar" in r.getMessage()]
    assert len(quirk) == (0 if normalise else 1) and "1 ×" in (quirk[0].getMessage() if quirk else "1 ×")
    ds = Dataset(path)
    assert n == 1 and len(rejects) == 0
    row = ds.catalogue[0]
    assert row["VRAD_SOURCE"] == "velclass" and row["VRAD_USED"] == pytest.approx(15.637, abs=1e-3)
    assert row["MISSING_SETUP"] == "" and row["R_IN_HR21"] == 16200 and "degraded" not in row["PREP_NOTES"]
    flux = ds.read()[0]
    assert np.isfinite(flux).all() and np.percentile(flux, 95) == pytest.approx(1.0, abs=0.05)
    for line in CA_II:
        assert line_minimum(ds.wavelength, flux, line, half=1.0) == pytest.approx(line, abs=0.05)


@pytest.mark.slow
def test_real_and_mock_ges_products_end_to_end(ges_file, tmp_path, capsys):
    """The real HR21 product among mock files of the same format: prepare → select → train → predict (CLI)."""
    from astropy.table import vstack

    from starlabel.cli import main

    survey = tmp_path / "survey"
    assert main(["synth", "survey", "--out", str(survey), "--n-stars", "80", "--seed", "3", "--workers", "1",
                 "--no-progress"]) == 0
    (survey / "spectra" / ges_file.name).symlink_to(ges_file)
    cat = Table.read(survey / "catalogue.fits")
    real = Table({"CNAME": [GES_CNAME], "SETUP": ["HR21"], "SNR": [58.6], "TEFF": [6203.0], "LOGG": [4.09],
                  "FEH": [0.15], "VRAD": np.ma.masked_array([0.0], [True])})  # GES iDR6 (HR15N analysis)
    vstack([cat, real]).write(tmp_path / "catalogue.fits")
    assert main(["prepare", str(tmp_path / "catalogue.fits"), str(survey / "spectra"), "--out",
                 str(tmp_path / "ds.h5"), "--no-progress"]) == 0
    ds = Dataset(tmp_path / "ds.h5")
    row = ds.catalogue[ds.rows(CNAME=GES_CNAME)[0]]
    assert row["MISSING_SETUP"] == "HR10" and row["VRAD_SOURCE"] == "velclass"
    assert set(ds.catalogue["VRAD_SOURCE"]) == {"catalogue", "velclass"}
    assert main(["select", str(tmp_path / "ds.h5"), "--out", str(tmp_path / "sets.h5")]) == 0
    assert "every grid setup observed" in capsys.readouterr().out
    sets = Dataset(tmp_path / "sets.h5")
    assert sets.catalogue["SET"][sets.rows(CNAME=GES_CNAME)[0]] == "observed"
    assert not any(sets.catalogue["MISSING_SETUP"][sets.rows(SET="train")])
    assert main(["train", str(tmp_path / "sets.h5"), "--out", str(tmp_path / "model"), "--runs", "1", "--keep", "1",
                 "--labels", "TEFF,LOGG,FE_H", "--max-epochs", "2", "--seed", "1"]) == 0
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "sets.h5"), "--out",
                 str(tmp_path / "labels.fits")]) == 0
    labels = Table.read(tmp_path / "labels.fits")
    real_row = labels[labels["CNAME"] == GES_CNAME]
    assert len(real_row) == 1 and real_row["MISSING_SETUP"][0] == "HR10" and np.isfinite(real_row["TEFF_CNN"][0])
