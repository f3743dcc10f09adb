"""Toy data for the tests (no tests here; the fixtures in conftest.py are built from it):
a few hundred small spectra whose Gaussian lines depend on the labels, and a fake evaluated run."""

import json
import warnings

import numpy as np
from astropy.table import Table

from starlabel.grid import GIRAFFE_NATIVE, Grid, Setup
from starlabel.io.spectra import read_spectrum, write_ges_fits, write_phase3_fits
from starlabel.io.dataset import write_dataset
from starlabel.labels import DEFAULT_LABELS
from starlabel.model.bundle import FORMAT
from starlabel.model.config import NetworkConfig

TOY_GRID = Grid.from_spec("TOYA:5000:5030:0.1,TOYB:8500:8530:0.1")  # 602 pixels
LABELS = ("TEFF", "LOGG", "FE_H")
# Small and fast training settings for tests (the quick preset, cut down).
FAST = dict(labels=LABELS, preset="quick", progress=False, max_epochs=8, patience=3, batch_size=16,
            learning_rate=5e-3)


def toy_spectra(n: int, seed: int = 0, grid: Grid = TOY_GRID):
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4500, 6500, n)
    logg = rng.uniform(1.0, 4.8, n)
    feh = rng.uniform(-1.0, 0.4, n)
    wave = grid.wavelength
    flux = np.ones((n, len(wave)))
    lines = [(5005.0, "fe"), (5012.0, "t"), (5021.0, "g"), (8507.0, "fe"), (8515.0, "g"), (8522.0, "t")]
    for centre, kind in lines:
        if kind == "fe":
            depth = 0.5 + 0.3 * feh
        elif kind == "t":
            depth = 0.6 - 0.2 * (teff - 5500) / 1000
        else:
            depth = 0.2 + 0.1 * logg
        width = 0.25 + 0.05 * (logg - 3)
        flux -= depth[:, None] * np.exp(-0.5 * ((wave - centre) / width[:, None]) ** 2)
    flux += rng.normal(0, 0.01, flux.shape)
    cat = Table({"CNAME": [f"TOY{i:05d}" for i in range(n)], "TEFF": teff, "LOGG": logg, "FE_H": feh,
                 "SNR": rng.uniform(20, 100, n)})
    return flux.astype("f4"), cat


def make_sets(path, n: int = 300, seed: int = 0, grid: Grid = TOY_GRID, nan_rows=(), n_observed: int = 0):
    flux, cat = toy_spectra(n, seed, grid)
    for r in nan_rows:
        flux[r, 10:20] = np.nan
    cat["SET"] = np.where(np.arange(n) < n - n_observed, "train", "observed")
    write_dataset(path, grid, flux, np.zeros(flux.shape, "u1"), cat)
    return path


RUN_GRID = Grid((Setup("HR10", 5500.0, 5560.0, 0.06), Setup("HR21", 8700.0, 8820.0, 0.1)))
OFFSET = {"TEFF": 20.0, "LOGG": -0.05, "MG_FE": 0.01, "AL_FE": 0.02, "FE_H": -0.01}
SIGMA = {"TEFF": 40.0, "LOGG": 0.08, "MG_FE": 0.04, "AL_FE": 0.06, "FE_H": 0.04}


def make_run(run, n=240, seed=0):
    """A fake RUN_DIR: sets.h5, model/ (split, history, manifest, snapshots), labels.fits, map.h5, truth.

    CNN = truth + OFFSET + N(0, SIGMA) and the ensemble std is SIGMA, so bias ≈ OFFSET,
    scatter ≈ SIGMA and ~68 % / ~95 % lie within 1σ / 2σ.
    """
    from safetensors.numpy import save_file

    from starlabel.io.dataset import write_dataset, write_table

    rng = np.random.default_rng(seed)
    run.mkdir(parents=True, exist_ok=True)
    cname = np.array([f"C{i:05d}" for i in range(n)])
    n_train = n // 2
    truth = Table({"CNAME": cname, "TEFF": rng.uniform(4000, 6500, n), "LOGG": rng.uniform(1, 4.8, n),
                   "MG_FE": rng.uniform(-0.1, 0.4, n), "AL_FE": rng.uniform(-0.2, 0.4, n),
                   "FE_H": rng.uniform(-1.5, 0.4, n)})
    cat = Table({"CNAME": cname, "SET": np.where(np.arange(n) < n_train, "train", "observed"),
                 "SNR": np.where(np.arange(n) < n_train, rng.uniform(30, 150, n), rng.uniform(10, 80, n))})
    labels = Table({"CNAME": cname})
    for name in DEFAULT_LABELS:
        cat[name] = truth[name] + 0.5 * SIGMA[name] * rng.standard_normal(n)
        labels[f"{name}_CNN"] = truth[name] + OFFSET[name] + SIGMA[name] * rng.standard_normal(n)
        labels[f"E_{name}_CNN"] = np.full(n, SIGMA[name])
    flux = (1 + 0.02 * rng.standard_normal((n, RUN_GRID.n_pixels))).astype(np.float32)
    write_dataset(run / "sets.h5", RUN_GRID, flux, np.zeros(flux.shape, np.uint8), cat, settings={"seed": seed})
    labels.write(run / "labels.fits", overwrite=True)
    (run / "survey").mkdir(exist_ok=True)
    truth.write(run / "survey" / "truth.fits", overwrite=True)

    model = run / "model"
    model.mkdir(exist_ok=True)
    test = cname[: n_train][::3]
    train = np.setdiff1d(cname[:n_train], test)
    (model / "split.json").write_text(json.dumps({"train": train.tolist(), "test": test.tolist()}))
    hist = {str(i): {"train_loss": list(1.0 / np.arange(1, 21) + 0.01 * i),
                     "test_loss": list(1.1 / np.arange(1, 21) + 0.01 * i)} for i in range(3)}
    (model / "history.json").write_text(json.dumps(hist))
    write_manifest(model, DEFAULT_LABELS, RUN_GRID, kept=[0, 1],
                   runs=[{"index": i, "seed": i, "test_loss": 0.05 + 0.01 * i, "epochs": 20, "kept": i < 2}
                         for i in range(3)], data={"sha256": "abc123"}, versions={"torch": "x"})
    test_rows = np.flatnonzero(np.isin(cname, test))
    snaps = {"test_rows": test_rows.astype(np.int64)}
    for ep, noise in ((1, 1.0), (5, 0.3), (20, 0.05)):
        snaps[f"epoch_{ep}"] = np.column_stack(
            [truth[nm][test_rows] + noise * (SIGMA[nm] * 10) * rng.standard_normal(len(test_rows))
             for nm in DEFAULT_LABELS]).astype(np.float32)
    save_file(snaps, str(model / "snapshots.safetensors"))

    # a minimal map file: a catalogue table with CNAME, SET, INNER, OUTLIER (as starlabel map writes)
    import h5py

    observed = cat["SET"] == "observed"
    outlier = np.arange(n) == n - 1  # outliers are never inner (starlabel.similarity)
    mtab = Table({"CNAME": cname, "SET": cat["SET"], "INNER": observed & (np.arange(n) % 4 != 0) & ~outlier,
                  "OUTLIER": outlier})
    with h5py.File(run / "map.h5", "w") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_table(f, "catalogue", mtab)
    return run


def write_manifest(model_dir, names, grid, kept=(0,), **extra):
    """A valid bundle manifest without weights: enough for the stages that read labels, split,
    history and snapshots (`Bundle(model_dir)` opens it; `verify()` would not pass)."""
    manifest = {"format": FORMAT, "format_version": 1,
                "labels": {"names": list(names), "mean": [0.0] * len(names), "scale": [1.0] * len(names)},
                "grid": json.loads(grid.to_json()),
                "network": NetworkConfig(n_pixels=grid.n_pixels, n_labels=len(names)).to_dict(),
                "kept": list(kept), "files": {}, **extra}
    (model_dir / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------- a small survey in mixed formats (prepare)

C = 299792.458


def native(setup):
    lo, hi, step = GIRAFFE_NATIVE[setup]
    return np.arange(lo, hi + step / 2, step)


def star_flux(wave, vrad, rng, lines=(5528.41, 5557.06, 8542.09, 8806.76), noise=0.005):
    flux = np.ones_like(wave)
    for c in lines:
        flux -= 0.5 * np.exp(-0.5 * ((wave - c * (1 + vrad / C)) / 0.2) ** 2)
    return flux + rng.normal(0, noise, wave.size)


def mixed_format_survey(tmp_path):
    """Catalogue + spectra in `tmp_path` (returned), for the prepare tests: four good stars (one as text
    and Phase 3 files), one missing HR21, one with a corrupt HR10, one with NaNs, one without VRAD."""
    rng = np.random.default_rng(3)
    spectra = tmp_path / "spectra"
    spectra.mkdir()
    names = ["good1", "good2", "good3", "good4", "nohr21", "corrupt", "nans", "novrad"]
    vrads = [12.0, -80.0, 150.0, 0.0, 5.0, 5.0, 5.0, np.nan]
    for name, v in zip(names, vrads):
        for setup in ("HR10", "HR21"):
            wave = native(setup)
            flux = star_flux(wave, 0.0 if np.isnan(v) else v, rng)
            if name == "nans":
                flux[:300] = np.nan
            if name == "nohr21" and setup == "HR21":
                continue
            p = spectra / f"{name}_{setup}.fits"
            write_ges_fits(p, wave[0], 0.05, flux, np.full(wave.size, 0.005), dict(CNAME=name, SETUP=setup))
            if name == "corrupt" and setup == "HR10":
                p.write_bytes(p.read_bytes()[:3000])
    # good4 as text (HR10) and Phase 3 (HR21) files instead of GES FITS
    for setup in ("HR10", "HR21"):
        s = read_spectrum(spectra / f"good4_{setup}.fits")
        (spectra / f"good4_{setup}.fits").unlink()
        if setup == "HR10":
            np.savetxt(spectra / "good4_HR10.txt", np.c_[s.wave, s.flux])
        else:
            write_phase3_fits(spectra / "good4_HR21.fits", s.wave / 10, s.flux, wave_unit="nm")
    cat = Table({"CNAME": names + ["good1"], "SETUP": ["HR10|HR21"] * 9, "VRAD": vrads + [12.0],
                 "TEFF": np.arange(9.0)})
    cat.write(tmp_path / "catalogue.fits")
    return tmp_path
