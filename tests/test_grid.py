"""Grid layout and flux-conserving resampling (known answers)."""

import numpy as np
import pytest

from starlabel.grid import Grid, Setup, resample
from starlabel.stages.prepare import to_rest_frame


def gaussian_line(wave, centre, depth=0.6, width=0.15):
    return 1.0 - depth * np.exp(-0.5 * ((wave - centre) / width) ** 2)


def centroid(wave, flux, centre, half=1.0):
    w = np.abs(wave - centre) < half
    a = 1.0 - flux[w]
    return float(np.sum(wave[w] * a) / np.sum(a))


def test_default_grid_is_the_papers_8669_pixels():
    g = Grid.default()
    assert g.names == ["HR10", "HR21"]
    assert g.setup("HR10").n_pixels == 4168 and g.setup("HR21").n_pixels == 4501
    assert g.n_pixels == 8669 == g.wavelength.size
    assert g.wavelength[0] == pytest.approx(5350.0) and g.wavelength[-1] == pytest.approx(8930.0)
    assert Grid.from_json(g.to_json()) == g


def test_grid_from_spec():
    assert Grid.from_spec("HR10").names == ["HR10"]
    g = Grid.from_spec("HR10, X:6000:6010:0.5")
    assert g.setup("X") == Setup("X", 6000.0, 6010.0, 0.5) and g.setup("X").n_pixels == 21
    assert g.slices()["X"] == slice(4168, 4168 + 21)
    with pytest.raises(ValueError, match="NAME:start:stop:step"):
        Grid.from_spec("HR99")


def test_resampling_conserves_flux_and_keeps_line_centre():
    wave = np.arange(5339.0, 5619.0, 0.05)
    flux = gaussian_line(wave, 5528.41)
    new = Setup("HR10", 5350.0, 5600.0, 0.06).wavelength
    out, covered = resample(wave, flux, new)
    assert covered.all()
    # equivalent width is conserved
    ew_in = np.sum(1 - flux[(wave > 5520) & (wave < 5537)]) * 0.05
    ew_out = np.sum(1 - out[(new > 5520) & (new < 5537)]) * 0.06
    assert ew_out == pytest.approx(ew_in, rel=1e-3)
    # the integral is conserved exactly where bin edges line up (every 0.3 Å here)
    w2 = np.arange(5339.025, 5619.0, 0.05)  # input edges at 5339.00 + 0.05 k
    f2 = 1 + 0.1 * np.sin(w2 / 7.0) + np.random.default_rng(0).normal(0, 0.05, w2.size)
    n2 = 5350.03 + 0.06 * np.arange(4000)  # output edges at 5350.00 + 0.06 j, up to 5590.00
    o2, c2 = resample(w2, f2, n2)
    assert c2.all()
    inside = (w2 > 5350.0) & (w2 < 5590.0)
    assert np.sum(o2) * 0.06 == pytest.approx(np.sum(f2[inside]) * 0.05, rel=1e-12)
    assert centroid(new, out, 5528.41) == pytest.approx(5528.41, abs=0.005)


def test_resample_marks_uncovered_bins():
    wave = np.arange(5360.0, 5590.0, 0.05)
    out, covered = resample(wave, np.ones_like(wave), np.arange(5350.0, 5600.0, 0.06))
    assert not covered[0] and not covered[-1] and covered[300]
    assert np.isnan(out[~covered]).all() and np.allclose(out[covered], 1.0)


@pytest.mark.parametrize("vrad", [-250.0, -31.7, 0.0, 48.2, 180.0])
def test_doppler_shift_is_recovered(vrad):
    rest = 8542.09
    wave = np.arange(8484.0, 9001.0, 0.05)
    observed = rest * (1 + vrad / 299792.458)
    flux = gaussian_line(wave, observed, width=0.3)
    new = Setup("HR21", 8480.0, 8930.0, 0.1).wavelength
    out, _ = resample(to_rest_frame(wave, vrad), flux, new)
    assert centroid(new, out, rest, half=1.5) == pytest.approx(rest, abs=0.01)
