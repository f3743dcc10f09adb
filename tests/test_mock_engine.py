"""Known answers for the spectrum engine: Doppler shift, element-specific lines, gravity wings, noise."""

import numpy as np
import pytest

from starlabel.mock import engine
from starlabel.io.linelist import read_linelist
from starlabel.mock.survey import native_wavelength, render_star

HR21 = native_wavelength("HR21")


def _minimum(wave, flux, guess, half=0.3):
    """Sub-pixel line minimum (parabola through the lowest pixel and its neighbours)."""
    m = np.abs(wave - guess) < half
    i = np.flatnonzero(m)[np.argmin(flux[m])]
    y0, y1, y2 = flux[i - 1:i + 2]
    return wave[i] + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) * (wave[1] - wave[0])


def test_linelist_has_required_lines():
    t = read_linelist()
    for species, w in [("Mg I", 5528.41), ("Mg I", 8717.81), ("Mg I", 8736.02), ("Mg I", 8806.76),
                       ("Al I", 5557.06), ("Al I", 8772.87), ("Al I", 8773.90), ("Ca II", 8498.02),
                       ("Ca II", 8542.09), ("Ca II", 8662.14)]:
        assert np.any((t["SPECIES"] == species) & (np.abs(t["WAVELENGTH"] - w) < 0.02)), (species, w)
    for species in ("Fe I", "Si I", "Ca I", "Ti I", "Cr I", "Ni I"):
        assert np.sum(t["SPECIES"] == species) >= (100 if species == "Fe I" else 5), species
    assert {"ELEMENT", "ION", "EP", "LOGGF", "LOG_GAMMA6", "LOG_GAMMA_RAD"} <= set(t.colnames)
    assert np.all(np.diff(t["WAVELENGTH"]) >= 0)


@pytest.mark.parametrize("vrad", [0.0, 87.0, -143.0])
def test_doppler_shift_moves_line_by_v_over_c(vrad):
    wave = np.arange(8795.0, 8818.0, 0.005)
    flux = engine.synthesize(wave, 5000, 3.0, 0.0, vrad=vrad)
    expected = 8806.756 * (1 + vrad / engine.C_KMS)
    assert abs(_minimum(wave, flux, expected) - expected) < 0.005


def test_mg_changes_only_mg_lines_and_al_only_al_lines():
    lines = read_linelist()
    base = engine.synthesize(HR21, 4800, 2.5, -0.3, {"Mg": 0.0, "Al": 0.0}, resolution=16200)
    for el, probe in (("Mg", 8806.76), ("Al", 8773.90)):
        more = engine.synthesize(HR21, 4800, 2.5, -0.3, {el: 0.3}, resolution=16200)
        i = np.argmin(np.abs(HR21 - probe))
        assert base[i] - more[i] > 0.03, f"[{el}/Fe] +0.3 should deepen {el} {probe}"
        own = np.asarray(lines["WAVELENGTH"][lines["ELEMENT"] == el])
        far = np.min(np.abs(HR21[:, None] - own[None, :]), axis=1) > 3.0
        # beyond 3 Å only the far damping wing of Mg I 8806.76 remains (< 0.5 %)
        assert np.abs(more - base)[far].max() < 5e-3, f"[{el}/Fe] changed pixels far from {el} lines"
    # Fe I 8688.62 does not respond to Mg
    more = engine.synthesize(HR21, 4800, 2.5, -0.3, {"Mg": 0.3}, resolution=16200)
    i = np.argmin(np.abs(HR21 - 8688.62))
    assert abs(more[i] - base[i]) < 1e-4


def test_higher_gravity_gives_broader_ca_triplet_wings():
    wing = (np.abs(HR21 - 8542.09) > 2.0) & (np.abs(HR21 - 8542.09) < 4.0)
    giant = engine.synthesize(HR21, 5000, 2.5, 0.0, resolution=16200)
    dwarf = engine.synthesize(HR21, 5000, 4.6, 0.0, resolution=16200)
    assert (1 - dwarf[wing]).mean() > 1.15 * (1 - giant[wing]).mean()


def test_responses_are_smooth_and_bounded():
    """Line depths change smoothly with each label (no jumps), flux stays in (0, 1]."""
    i = np.argmin(np.abs(HR21 - 8806.76))
    depths = [1 - engine.synthesize(HR21, t, 2.5, -0.5, resolution=16200)[i] for t in np.arange(4000, 7001, 250)]
    assert np.all(np.diff(depths) < 0)  # Mg I weakens monotonically with Teff
    f = engine.synthesize(HR21, 4000, 4.9, 0.5, {"Mg": 0.5, "Al": 1.2}, resolution=16200)
    assert f.min() > 0.05 and f.max() <= 1.0 + 1e-9


def test_rotation_makes_lines_shallower_but_keeps_equivalent_width():
    slow = engine.synthesize(HR21, 5200, 3.0, 0.0, vsini=2, resolution=16200)
    fast = engine.synthesize(HR21, 5200, 3.0, 0.0, vsini=60, resolution=16200)
    m = (HR21 > 8700) & (HR21 < 8830)
    assert (1 - fast[m]).max() < 0.8 * (1 - slow[m]).max()
    assert abs((1 - fast[m]).sum() / (1 - slow[m]).sum() - 1) < 0.05


def test_noise_matches_snr():
    job = {"seed": [7, 0], "teff": 5200.0, "logg": 3.0, "feh": -0.2, "mg_fe": 0.1, "al_fe": 0.1,
           "alpha_fe": 0.08, "vsini": 3.0, "vrad": 12.0, "missing": "", "defects": "",
           "snr_HR10": 40.0, "snr_HR21": 120.0}
    out = render_star(job)
    for setup, snr in (("HR10", 40.0), ("HR21", 120.0)):
        wave = native_wavelength(setup)
        model = engine.synthesize(wave, 5200, 3.0, -0.2, {"Mg": 0.1, "Al": 0.1, "Si": 0.08, "Ca": 0.08, "Ti": 0.08},
                                  vsini=3.0, resolution={"HR10": 19800, "HR21": 16200}[setup], vrad=12.0)
        flux, err, _ = out[setup]
        assert abs(np.median(model / err) / snr - 1) < 0.01
        z = (flux - model) / err
        mad = 1.4826 * np.median(np.abs(z - np.median(z)))  # robust to planted cosmics
        assert abs(mad - 1) < 0.05
