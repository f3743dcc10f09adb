"""The emulator engine of the mock survey (`starlabel.mock.emulated`): engine.synthesize's contract."""

import json

import numpy as np
import pytest

from starlabel.mock import emulated, engine
from starlabel.mock.emulator import emu_wavelength
from starlabel.mock.survey import make_survey, native_wavelength

SUN = dict(teff=5772.0, logg=4.44, feh=0.0, abundances={"Mg": 0.0, "Al": 0.0, "Si": 0.0, "Ca": 0.0, "Ti": 0.0})


def test_unbroadened_rest_frame_flux_is_the_emulators_own():
    emu = emulated.load()
    wave = emu_wavelength("HR21")[100:-100]
    ours = emulated.synthesize(wave, **SUN, vmic=1.0, vmac=0.0)
    labels = emulated.label_vector(SUN["teff"], SUN["logg"], SUN["feh"], SUN["abundances"], 1.0)
    theirs = emu.flux(labels)[0][emu.slices["HR21"]][100:-100]
    assert np.allclose(ours, theirs, atol=1e-5)


def test_doppler_shift_and_broadening_act_like_the_onelayer_engine():
    wave = native_wavelength("HR21")
    rest = emulated.synthesize(wave, **SUN, resolution=16200.0)
    moved = emulated.synthesize(wave, **SUN, resolution=16200.0, vrad=100.0)
    core = (wave > 8530) & (wave < 8560)  # Ca II 8542
    expected = 8542.09 * (1 + 100.0 / engine.C_KMS)
    assert abs(wave[core][np.argmin(moved[core])] - expected) < 0.1
    assert abs(wave[core][np.argmin(rest[core])] - 8542.09) < 0.1
    fast = emulated.synthesize(wave, **SUN, resolution=16200.0, vsini=40.0)
    assert fast[core].min() > rest[core].min() + 0.05  # rotation fills the line core
    assert np.isfinite(rest).all() and np.isfinite(moved).all()  # product edges beyond the window filled


def test_outside_the_label_box_is_clipped_not_extrapolated():
    wave = native_wavelength("HR10")
    emu = emulated.load()
    vmic = float(engine.microturbulence(emu.hi[0] + 2000, 4.0))
    hot = emulated.synthesize(wave, emu.hi[0] + 2000, 4.0, 0.0, vmic=vmic, vmac=3.0)
    edge = emulated.synthesize(wave, emu.hi[0], 4.0, 0.0, vmic=vmic, vmac=3.0)
    window = (wave > 5342) & (wave < 5608)  # the one-layer edges follow the unclipped labels
    assert np.allclose(hot[window], edge[window])


def test_wavelengths_outside_every_window_are_refused():
    with pytest.raises(ValueError, match="outside the emulator's windows"):
        emulated.synthesize(np.linspace(6000, 6010, 50), **SUN)


def test_survey_with_the_emulator_engine_records_it_and_refuses_another_engine(tmp_path):
    out = tmp_path / "s"
    summary = make_survey(out, 6, seed=3, workers=1, progress=False, engine_name="emulator")
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["engine"] == "emulator" and manifest["emulator"]["grid_points"] >= 1
    assert len(list((out / "spectra").glob("*.fit"))) == summary["spectra"]
    with pytest.raises(ValueError, match="already holds"):
        make_survey(out, 6, seed=3, workers=1, progress=False, engine_name="onelayer")
    with pytest.raises(ValueError, match="unknown engine"):
        make_survey(tmp_path / "t", 6, engine_name="turbospectrum")


def test_survey_with_another_emulator_file_uses_and_records_it(tmp_path):
    """A rebuilt emulator renders the survey (here: one whose network is zeroed, so it gives its mean
    spectrum); resuming that survey with the shipped emulator is refused rather than mixed."""
    import torch

    from starlabel.mock.emulator import Emulator

    emu = Emulator.load()
    with torch.no_grad():
        for p in emu.net[-1].parameters():
            p.zero_()
    emu.provenance = {**emu.provenance, "built": "test-mean-spectrum"}
    path = tmp_path / "mean.safetensors"
    emu.save(path)
    runs = {}
    for name, file in (("shipped", None), ("mean", path)):
        make_survey(tmp_path / name, 2, seed=5, workers=1, progress=False, engine_name="emulator", emulator=file)
        runs[name] = sorted((tmp_path / name / "spectra").glob("*.fit"))
    manifest = json.loads((tmp_path / "mean" / "synth.json").read_text())
    assert manifest["emulator"]["file"] == str(path.resolve())
    assert manifest["emulator"]["built"] == "test-mean-spectrum"
    assert [p.name for p in runs["shipped"]] == [p.name for p in runs["mean"]]
    from astropy.io import fits

    a, b = (fits.getdata(runs[k][0], "final_spectrum") for k in ("shipped", "mean"))
    assert np.nanmax(np.abs(a - b)) > 0.05  # a different emulator, different spectra
    with pytest.raises(ValueError, match="emulator built test-mean-spectrum"):
        make_survey(tmp_path / "mean", 2, seed=5, workers=1, progress=False, engine_name="emulator")


def _mock_sun_gap(shared_data):
    from starlabel.mock import sim_to_real as s2r

    real = s2r.real_sun(shared_data)
    return s2r.report(real, s2r.model_on_grid(emulated.load().spectrum(s2r.sun_labels())))


def test_the_mock_suns_flux_against_the_real_sun(shared_data):
    """Issue 11's flux check on what the mock survey renders (the shipped emulator), real Sun from
    ../shared/data. Measured 2026-12-01 10:21 UTC (bench_sim_to_real.py): HR10 0.0227 (held-out half 0.0212),
    HR21 0.0120; the one-layer engine 0.031 / 0.062."""
    gap = _mock_sun_gap(shared_data)
    assert gap["HR21"]["all"] <= 0.015 and gap["HR21"]["held_out_half"] <= 0.015  # the issue's HR21 target
    assert gap["HR10"]["all"] < 0.024 and gap["HR10"]["held_out_half"] < 0.022  # where HR10 stands


@pytest.mark.xfail(strict=True, reason="issue 11's HR10 target is not met (0.0227; PySME with the Gaia-ESO line list "
                                       "0.0223): Fe I lines from 4.38-4.47 eV and Ba I 5535 disagree with the Sun in "
                                       "every laboratory list here, and a solar log gf fit needs a second real HR10 "
                                       "star to be checked on (README, sim-to-real)")
def test_the_mock_suns_hr10_flux_meets_the_issue_target(shared_data):
    assert _mock_sun_gap(shared_data)["HR10"]["all"] <= 0.020
