"""Excluded pixels (`starlabel.exclusion`, `train --exclude-windows/--exclude-elements`): the networks never
read them, in training, prediction, gradients and after a bundle round trip."""

import numpy as np
import pytest
from astropy.table import Table

from starlabel.exclusion import excluded_pixels, from_runs, parse_windows, to_runs
from toys import FAST, TOY_GRID

LINES = Table({"ELEMENT": ["Mn", "Fe", "Mn"], "WAVELENGTH": [5012.0, 5015.0, 8515.0]})


def test_windows_are_parsed_and_bad_ones_named():
    assert parse_windows("8619-8624, 5420.1-5420.6,") == [(8619.0, 8624.0), (5420.1, 5420.6)]
    with pytest.raises(ValueError, match="'8624-8619'.*LOW must be below HIGH"):
        parse_windows("8624-8619")
    with pytest.raises(ValueError, match="'8619' is not LOW-HIGH"):
        parse_windows("8619")


def test_windows_and_element_lines_select_their_pixels():
    wave = TOY_GRID.wavelength
    mask = excluded_pixels(wave, [(5020.0, 5021.0)], ["mn"], halfwidth=0.2, lines=LINES)
    near_mn = (np.abs(wave - 5012.0) <= 0.2 + 1e-9) | (np.abs(wave - 8515.0) <= 0.2 + 1e-9)
    in_window = (wave >= 5020.0) & (wave <= 5021.0)
    assert np.array_equal(mask, near_mn | in_window)
    assert not mask[np.argmin(np.abs(wave - 5015.0))]  # Fe stays
    with pytest.raises(ValueError, match="no lines of Xx"):
        excluded_pixels(wave, elements=["Xx"], lines=LINES)
    assert np.array_equal(from_runs(to_runs(mask), mask.size), mask)
    only_first = excluded_pixels(wave, elements=["Mn"], lines=LINES, elements_within=[(5000.0, 5030.0)])
    assert only_first.any() and not only_first[wave > 8000].any()  # the 8515-Å Mn line stays
    assert not excluded_pixels(wave).any()


def test_networks_never_read_excluded_pixels_before_or_after_a_bundle_round_trip(tmp_path):
    from starlabel import Ensemble
    from toys import toy_spectra

    flux, cat = toy_spectra(160, seed=3)
    mask = excluded_pixels(TOY_GRID.wavelength, [(5011.5, 5012.5), (8520.0, 8524.0)])
    before = flux.copy()
    settings = {k: v for k, v in FAST.items() if k not in ("labels", "preset", "progress")}
    from starlabel.model.config import preset

    ens = Ensemble.fit(flux, cat, names=("TEFF", "LOGG", "FE_H"), grid=TOY_GRID,
                       config=preset("quick", runs=2, keep=2, **dict(settings, max_epochs=2)), seed=0)
    assert np.array_equal(flux, before)  # the caller's spectra are not touched

    changed = flux[:8].copy()
    changed[:, mask] = np.random.default_rng(0).uniform(0.2, 1.5, (8, mask.sum()))
    plain = Ensemble.fit(flux, cat, names=("TEFF", "LOGG", "FE_H"), grid=TOY_GRID,
                         config=preset("quick", runs=1, keep=1, **dict(settings, max_epochs=2)), seed=0,
                         exclude=mask)
    for model in (plain, Ensemble.load(plain.save(tmp_path / "bundle"))):
        assert np.array_equal(model.excluded, mask)
        assert np.allclose(model.predict(flux[:8]).mean, model.predict(changed).mean)
        grads = model.gradients(flux[:2])
        assert np.all(grads[:, :, mask] == 0) and np.any(grads[:, :, ~mask] != 0)
    assert plain.manifest["excluded_pixels"]["n"] == mask.sum()
    from starlabel.stages.explain import gradient_maps

    maps = gradient_maps(plain.networks, plain.labels, [flux[:4]], TOY_GRID.wavelength, TOY_GRID, progress=False,
                         excluded=plain.excluded)
    assert np.all(maps.ensemble_absolute[:, mask] == 0) and np.any(maps.ensemble_absolute[:, ~mask] != 0)
    # without exclusion the same change moves the labels: the test above can fail
    assert not np.allclose(ens.predict(flux[:8]).mean, ens.predict(changed).mean)


def test_train_command_records_the_exclusion_and_names_a_bad_window(toy_sets, tmp_path, capsys):
    import json

    from starlabel.cli import main

    common = [str(toy_sets), "--runs", "1", "--keep", "1", "--max-epochs", "1", "--labels", "TEFF,LOGG,FE_H",
              "--no-progress"]
    assert main(["train", *common, "--out", str(tmp_path / "bad"), "--exclude-windows", "5011"]) == 2
    err = capsys.readouterr().err
    assert "starlabel train: error:" in err and "'5011' is not LOW-HIGH" in err and "Traceback" not in err
    assert main(["train", *common, "--out", str(tmp_path / "m"), "--exclude-windows", "5011-5013,8520-8521"]) == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    wave = TOY_GRID.wavelength
    expected = ((wave >= 5011) & (wave <= 5013)) | ((wave >= 8520) & (wave <= 8521))
    assert manifest["excluded_pixels"]["n"] == expected.sum()
    assert manifest["data"]["excluded"]["windows"] == [[5011.0, 5013.0], [8520.0, 8521.0]]

    assert main(["train", *common, "--out", str(tmp_path / "s"), "--exclude-elements", "Fe",
                 "--exclude-setups", "HR10"]) == 2
    err = capsys.readouterr().err
    assert "--exclude-setups HR10: not on the grid" in err and "TOYA, TOYB" in err
