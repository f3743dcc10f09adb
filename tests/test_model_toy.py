"""Toy data for the model tests: a few hundred small spectra whose Gaussian lines depend on the labels.
(No tests here; imported by test_model.py and test_predict.py.)"""

import numpy as np
from astropy.table import Table

from starlabel.grid import Grid
from starlabel.io.dataset import write_dataset

TOY_GRID = Grid.from_spec("TOYA:5000:5030:0.1,TOYB:8500:8530:0.1")  # 602 pixels
LABELS = ("TEFF", "LOGG", "FE_H")


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
