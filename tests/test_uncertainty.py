"""Noise-propagated uncertainties (issue 3 §5: uncertainties that mean something)."""

import numpy as np
import pytest
from astropy.table import Table

from starlabel.grid import Grid
from starlabel.uncertainty import noise_sigma, pixel_noise, pixel_sigma


def _spectra(n, noise, seed=0):
    """Continuum-normalised spectra with absorption lines and white noise of known level."""
    rng = np.random.default_rng(seed)
    grid = Grid.from_spec("A:5000:5100:0.05,B:8500:8600:0.1")
    w = grid.wavelength
    flux = np.ones((n, len(w)))
    for c in rng.uniform(5000, 8600, 60):
        flux -= 0.4 * np.exp(-0.5 * ((w - c) / 0.15) ** 2)
    flux += rng.normal(size=flux.shape) * np.repeat(noise, [s.n_pixels for s in grid.setups])
    return grid, flux.astype(np.float32)


def test_pixel_noise_recovers_the_noise_of_each_setup_despite_lines():
    grid, flux = _spectra(20, np.array([0.02, 0.005]))
    est = pixel_noise(flux, list(grid.slices().values()))
    assert est.shape == (20, 2)
    np.testing.assert_allclose(np.median(est, 0), [0.02, 0.005], rtol=0.08)


class _LinearEnsemble:
    """Two 'networks' that are linear maps: their noise propagation is known exactly."""

    def __init__(self, grid, weights):
        self.grid, self.weights = grid, weights  # (M, n_pixels, L)

    def predict_each(self, flux, **kw):
        return np.einsum("np,mpl->mnl", np.asarray(flux, float), self.weights)


def test_noise_sigma_matches_linear_error_propagation():
    noise = np.array([0.02, 0.01])
    grid, flux = _spectra(300, noise, seed=1)
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(2, grid.n_pixels, 3)) / np.sqrt(grid.n_pixels)
    ens = _LinearEnsemble(grid, weights)
    got = noise_sigma(ens, flux, draws=4, seed=5)
    # σ² = Σ_pixels (w · σ_pixel)², averaged over the two networks
    per_pixel = np.repeat(pixel_noise(flux, list(grid.slices().values())), [s.n_pixels for s in grid.setups], 1)
    want = np.sqrt(np.mean([(per_pixel**2) @ (w**2) for w in weights], 0))
    assert got.shape == (300, 3)
    # got² is a mean of 8 squared draws (4 per network): unbiased, so its ratio to want² averages
    # to 1 (sampling error of the mean over 900 star-labels ≈ 0.017)
    assert np.mean((got / want) ** 2) == pytest.approx(1.0, abs=0.06)
    np.testing.assert_array_equal(got, noise_sigma(ens, flux, draws=4, seed=5))  # repeatable
    with pytest.raises(ValueError, match="draws"):
        noise_sigma(ens, flux, draws=0)


def test_predict_writes_noise_and_total_uncertainty(tmp_path):
    from starlabel.cli import main
    from toys import LABELS, make_sets

    sets = make_sets(tmp_path / "SETS.h5", n=120)
    assert main(["train", str(sets), "--out", str(tmp_path / "model"), "--runs", "2", "--keep", "2",
                 "--labels", ",".join(LABELS), "--max-epochs", "2", "--seed", "1"]) == 0
    args = ["predict", str(tmp_path / "model"), str(sets), "--chunk", "50"]
    assert main([*args, "--out", str(tmp_path / "a.fits"), "--noise-draws", "2"]) == 0
    assert main([*args, "--out", str(tmp_path / "b.fits"), "--noise-draws", "2"]) == 0
    a, b = Table.read(tmp_path / "a.fits"), Table.read(tmp_path / "b.fits")
    for n in LABELS:
        e, noise, total = (np.asarray(a[f"E_{n}_{k}"]) for k in ("CNN", "NOISE", "TOTAL"))
        assert (noise > 0).all()
        np.testing.assert_allclose(total, np.hypot(e, noise), rtol=1e-6)
        np.testing.assert_array_equal(noise, b[f"E_{n}_NOISE"])  # same command, same numbers
    assert main([*args, "--out", str(tmp_path / "c.fits"), "--noise-draws", "-1"]) == 2


def test_masked_pixels_neither_bias_the_noise_nor_get_noise():
    """Half of setup A repaired with a constant fill (mask set): DER_SNR still measures the noise
    of the real pixels, and the draws leave the filled pixels alone — a network that reads only
    those pixels has no noise-propagated uncertainty."""
    grid, flux = _spectra(50, np.array([0.02, 0.01]), seed=3)
    mask = np.zeros(flux.shape, np.uint8)
    mask[:, :1000] = 1
    flux[:, :1000] = 1.0
    slices = list(grid.slices().values())
    assert np.median(pixel_noise(flux, slices)[:, 0]) < 0.015  # the fill drags the plain estimate down
    np.testing.assert_allclose(np.median(pixel_noise(flux, slices, mask), 0), [0.02, 0.01], rtol=0.08)
    all_masked = mask.copy()
    all_masked[:, slices[1]] = 1
    assert (pixel_noise(flux, slices, all_masked)[:, 1] == 0).all()
    weights = np.zeros((1, grid.n_pixels, 1))
    weights[0, :1000] = 0.1
    ens = _LinearEnsemble(grid, weights)
    assert (noise_sigma(ens, flux, draws=2, mask=mask) == 0).all()
    assert (noise_sigma(ens, flux, draws=2) > 0).all()


def test_error_spectrum_sets_the_noise_where_it_is_finite():
    """A per-pixel error spectrum replaces DER_SNR where it is known (noise varying along the
    spectrum, which DER_SNR's one number per setup cannot follow) and DER_SNR fills its NaNs; the
    noise-propagated uncertainty of a linear network then follows J σ² Jᵀ with that σ."""
    grid, flux = _spectra(200, np.array([0.01, 0.01]), seed=4)
    slices = list(grid.slices().values())
    error = np.full(flux.shape, 0.01, np.float32)
    error[:, :500] = 0.05  # a noisy stretch, e.g. a sky-line residual
    error[:, slices[1]] = np.nan  # no error known in setup B
    sigma = pixel_sigma(flux, slices, error=error)
    assert (sigma[:, :500] == 0.05).all() and (sigma[:, 500 : slices[0].stop] == 0.01).all()
    np.testing.assert_allclose(np.median(sigma[:, slices[1]]), 0.01, rtol=0.08)  # DER_SNR fills in
    weights = np.zeros((1, grid.n_pixels, 2))
    weights[0, :500, 0] = 0.1  # label 0 reads the noisy stretch, label 1 the quiet rest of A
    weights[0, 500 : slices[0].stop, 1] = 0.1
    ens = _LinearEnsemble(grid, weights)
    got = noise_sigma(ens, flux, draws=8, seed=1, error=error)
    want = 0.1 * np.sqrt([500 * 0.05**2, (slices[0].stop - 500) * 0.01**2])
    np.testing.assert_allclose(np.sqrt(np.mean(got**2, 0)), want, rtol=0.05)
    without = noise_sigma(ens, flux, draws=8, seed=1)  # DER_SNR: 0.01 everywhere
    assert np.sqrt(np.mean(without[:, 0] ** 2)) < 0.3 * want[0]


def test_predict_draws_the_noise_from_the_dataset_error(toy_bundle, tmp_path):
    """`predict --noise-draws` on toy spectra with noise 0.01, once without /error (DER_SNR) and once
    with an error spectrum claiming 0.05: E_*_NOISE grows about fivefold (the toy network is close to
    linear at this noise level)."""
    from starlabel.cli import main
    from starlabel.io.dataset import Dataset, write_dataset
    from toys import make_sets

    data = Dataset(make_sets(tmp_path / "obs.h5", n=6, seed=3, n_observed=40))
    flux, mask = data.read(mask=True)
    write_dataset(tmp_path / "obs_err.h5", data.grid, flux, mask, data.catalogue,
                  error=np.full(flux.shape, 0.05, "f4"))
    noise = {}
    for name in ("obs.h5", "obs_err.h5"):
        out = tmp_path / f"{name}.fits"
        assert main(["predict", str(toy_bundle), str(tmp_path / name), "--out", str(out), "--noise-draws", "2",
                     "--no-progress"]) == 0
        t = Table.read(out)
        noise[name] = np.array([np.median(t[c]) for c in t.colnames if c.endswith("_NOISE")])
    ratio = noise["obs_err.h5"] / noise["obs.h5"]
    assert np.all((ratio > 3) & (ratio < 8)), ratio
