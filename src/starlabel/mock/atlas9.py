"""Kurucz/Castelli ATLAS9 model atmospheres: read the grid files and interpolate in Teff, log g, [M/H].

The shared grid (`../shared/data/atmospheres/kurucz_atlas9/a{m,p}XXk2.dat`, vturb 2 km/s) holds one
file per metallicity with ~400 models each, every model a block of TEFF/GRAVITY header cards and a
`READ DECK6 n RHOX,T,P,XNE,ABROSS,...` table on a mass-column (RHOX) depth scale. Some files have
lost the first character of every line (``EFF`` for ``TEFF``); the reader accepts both.

Interpolation: every node model is put on a common Rosseland optical-depth scale
(τ_Ross = ∫ κ_Ross dRHOX, κ_Ross = ABROSS), and T, log P, log n_e and log RHOX are interpolated
linearly in (Teff, log g, [M/H]) at fixed log τ_Ross -- the usual way of interpolating ATLAS9
(e.g. MOOG's kurucz interpolation; Masseron's MARCS interpolator uses the same optical-depth idea).
Where the grid has a hole (cool-to-hot edges at low gravity) the nearest existing gravity at that
Teff and [M/H] is used and a debug message says so. The models are scaled-solar (no α enhancement):
that is an approximation for α-rich stars, stated here and recorded with every spectrum.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

K_B = 1.380649e-16
M_H = 1.6735575e-24
_HEAD = re.compile(r"^T?EFF\s+([\d.]+)\s+GRAVITY\s+([-\d.]+)", re.M)
_DECK = re.compile(r"^R?EAD DECK6\s+(\d+)", re.M)
_SCALE = re.compile(r"ABUNDANCE SCALE\s+([\d.Ee+-]+)")
_FILE = re.compile(r"a([mp])(\d\d)k2\.dat$")
# mean atomic mass per nucleus of a scaled-solar mix (H 0.911, He 0.089 by number + metals)
MU_ATOM = 1.2886
LOG_TAU_STEP = 0.125  # ATLAS9's own Rosseland optical-depth step


@dataclass(frozen=True)
class Model:
    """One ATLAS9 model: depth arrays from the surface down."""

    teff: float
    logg: float
    monh: float
    rhox: np.ndarray
    temp: np.ndarray
    pgas: np.ndarray
    xne: np.ndarray
    abross: np.ndarray

    @property
    def log_tau_ross(self) -> np.ndarray:
        """log10 Rosseland optical depth from ∫ ABROSS dRHOX (top layer: τ0 = ABROSS·RHOX)."""
        tau = np.concatenate([[self.abross[0] * self.rhox[0]],
                              self.abross[0] * self.rhox[0] + np.cumsum(
                                  0.5 * (self.abross[1:] + self.abross[:-1]) * np.diff(self.rhox))])
        return np.log10(tau)


def monh_of_file(path: str | Path) -> float:
    """[M/H] from a Castelli file name: am05k2.dat → −0.5, ap02k2.dat → +0.2."""
    m = _FILE.search(Path(path).name)
    if not m:
        raise ValueError(f"{path}: not an ATLAS9 grid file name like am05k2.dat / ap00k2.dat")
    return (-1 if m.group(1) == "m" else 1) * int(m.group(2)) / 10


def read_grid_file(path: str | Path) -> list[Model]:
    """All models in one ATLAS9 grid file (a malformed block is skipped with a warning naming it)."""
    path = Path(path)
    text = path.read_text()
    monh = monh_of_file(path)
    heads = list(_HEAD.finditer(text))
    models = []
    for k, h in enumerate(heads):
        block = text[h.start(): heads[k + 1].start() if k + 1 < len(heads) else len(text)]
        try:
            d = _DECK.search(block)
            n = int(d.group(1))
            rows = block[d.end():].split("\n")[1:n + 1]
            a = np.array([r.split()[:5] for r in rows], dtype=float)
            if a.shape != (n, 5):
                raise ValueError(f"expected {n} depth rows, got {a.shape}")
            models.append(Model(float(h.group(1)), float(h.group(2)), monh,
                                a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4]))
        except (AttributeError, ValueError) as e:
            log.warning("%s: model %d (TEFF %s GRAVITY %s) skipped: %s", path.name, k, h.group(1), h.group(2), e)
    return models


class Atlas9Grid:
    """The grid of one directory of ATLAS9 files; `interpolate(teff, logg, monh)` → a Model."""

    def __init__(self, directory: str | Path, monh_range: tuple[float, float] = (-3.0, 0.5)):
        self.directory = Path(directory)
        files = sorted(self.directory.glob("a[mp]??k2.dat"))
        files = [f for f in files if monh_range[0] - 1e-6 <= monh_of_file(f) <= monh_range[1] + 1e-6]
        if not files:
            raise FileNotFoundError(f"no ATLAS9 files a[mp]XXk2.dat with [M/H] in {monh_range} in {self.directory}")
        self.files = files
        self.models: dict[tuple[float, float, float], Model] = {}
        for f in files:
            for m in read_grid_file(f):
                self.models[(m.teff, m.logg, m.monh)] = m
        self.monh_nodes = np.unique([k[2] for k in self.models])
        self.teff_nodes = np.unique([k[0] for k in self.models])

    def _node(self, teff: float, logg: float, monh: float) -> Model:
        """The model at a node; if that gravity is missing, the nearest gravity at (teff, monh)."""
        m = self.models.get((teff, logg, monh))
        if m is not None:
            return m
        gs = np.array([k[1] for k in self.models if k[0] == teff and k[2] == monh])
        if gs.size == 0:
            raise ValueError(f"ATLAS9 grid has no model at Teff {teff}, [M/H] {monh}")
        g = float(gs[np.argmin(np.abs(gs - logg))])
        log.debug("ATLAS9 hole at (%g, %g, %g): using log g %g", teff, logg, monh, g)
        return self.models[(teff, g, monh)]

    @staticmethod
    def _bracket(nodes: np.ndarray, x: float, name: str) -> list[tuple[float, float]]:
        """[(node, weight), ...] for linear interpolation; outside the nodes is an error."""
        if x < nodes[0] - 1e-9 or x > nodes[-1] + 1e-9:
            raise ValueError(f"{name} = {x} outside the ATLAS9 grid [{nodes[0]}, {nodes[-1]}]")
        j = int(np.clip(np.searchsorted(nodes, x) - 1, 0, nodes.size - 2))
        lo, hi = float(nodes[j]), float(nodes[j + 1])
        f = (x - lo) / (hi - lo)
        if f <= 1e-9:
            return [(lo, 1.0)]
        if f >= 1 - 1e-9:
            return [(hi, 1.0)]
        return [(lo, 1 - f), (hi, f)]

    def interpolate(self, teff: float, logg: float, monh: float) -> Model:
        """Trilinear interpolation at fixed log τ_Ross (at a node: that node's own model, unchanged)."""
        g_nodes = np.arange(0.0, 5.0001, 0.5)
        corners = []
        for m, wm in self._bracket(self.monh_nodes, monh, "[M/H]"):
            for t, wt in self._bracket(self.teff_nodes, teff, "Teff"):
                for g, wg in self._bracket(g_nodes, logg, "log g"):
                    corners.append((self._node(t, g, m), wm * wt * wg))
        if len(corners) == 1 and corners[0][0].teff == teff and corners[0][0].logg == logg:
            return corners[0][0]
        taus = [c.log_tau_ross for c, _ in corners]
        lo = max(t[0] for t in taus)
        hi = min(t[-1] for t in taus)
        grid = np.arange(np.ceil(lo / LOG_TAU_STEP - 0.01) * LOG_TAU_STEP, hi + 1e-9, LOG_TAU_STEP)
        grid = np.clip(grid, lo, hi)  # the rounding tolerance may step a hair outside
        acc = {k: np.zeros(grid.size) for k in ("temp", "pgas", "xne", "rhox", "abross")}
        for (c, w), lt in zip(corners, taus):
            acc["temp"] += w * np.interp(grid, lt, c.temp)
            for k in ("pgas", "xne", "rhox", "abross"):
                acc[k] += w * np.interp(grid, lt, np.log10(getattr(c, k)))
        return Model(teff, logg, monh, 10 ** acc["rhox"], acc["temp"], 10 ** acc["pgas"],
                     10 ** acc["xne"], 10 ** acc["abross"])


@lru_cache(maxsize=2)
def load_grid(directory: str) -> Atlas9Grid:
    """One parsed grid per directory per process (parsing takes a few seconds)."""
    return Atlas9Grid(directory)


def to_pysme(model: Model, abund=None):
    """A PySME `Atmosphere` (embedded, plane-parallel, RHOX depth scale) from an ATLAS9 Model.

    PySME's own `KrzFile` reads single-model .krz files only; this builds the same object from
    arrays: n_atoms = P/kT − n_e, ρ = n_atoms μ m_H with μ for a scaled-solar mix.
    """
    from pysme.abund import Abund
    from pysme.atmosphere.atmosphere import Atmosphere

    xna = model.pgas / (K_B * model.temp) - model.xne
    atmo = Atmosphere(teff=model.teff, logg=model.logg, vturb=2.0, lonh=1.25,
                      source=f"ATLAS9 (Castelli & Kurucz 2003) interpolated at {model.teff:.0f}/"
                             f"{model.logg:.2f}/{model.monh:+.2f}",
                      method="embedded", geom="PP", depth="RHOX", interp="RHOX",
                      opflag=[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0], wlstd=5000.0,
                      rhox=model.rhox, temp=model.temp, xne=model.xne, xna=xna, rho=xna * MU_ATOM * M_H)
    atmo.abund = abund if abund is not None else Abund(monh=model.monh, pattern="solar")
    return atmo
