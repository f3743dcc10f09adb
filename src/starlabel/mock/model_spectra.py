"""Model spectra at given labels on a dataset's grid: what a star with these labels should look like.

`model_spectra(labels, grid)` returns the continuum-normalised model flux (N, P) on the grid for a
table of labels (the bundle's names: TEFF, LOGG, FE_H, MG_FE, AL_FE, …), with one of two engines:

* ``onelayer`` — `engine.synthesize`, the engine the mock survey renders with, under the survey's
  conventions (`survey.render_star`): microturbulence and macroturbulence from (Teff, log g),
  [Si/Fe] = [Ca/Fe] = [Ti/Fe] = [α/Fe], instrument R per setup, the star's v sin i. Each setup is
  synthesised on its grid pixels plus a margin (so the broadening has no edge effect), then cut.
* ``emulator`` — `emulator.Emulator` (PySME): unbroadened flux on its native setup grids, observed
  exactly as the mock survey's emulator engine does (`emulated.observe`: the setup's R ⊗ v_mac ⊗
  v sin i with `engine.broaden`, then `grid.resample`). It covers only
  what its native grids cover (GIRAFFE HR10 and HR21); other pixels are NaN.

Labels the table lacks: TEFF, LOGG and FE_H (or FEH) are required (a clear KeyError names the
missing one); MG_FE and AL_FE default to 0 (solar-scaled), ALPHA_FE to 0.8·MG_FE (the mock
population's relation), VSINI to 2.5 km/s (the mock population's median), VMIC to
`engine.microturbulence`. The defaults used are recorded in `ModelSpectra.defaults`.

A star whose labels are non-finite or outside the engine's label range (the emulator's training
box; for the one-layer engine the mock survey's label space, `pysme_grid.BOUNDS`) gets a NaN model
and a bit in `flag` (MODEL_* below) — never an exception, so a batch job carries on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from ..grid import Grid, setup_resolution

log = logging.getLogger(__name__)

ENGINES = ("onelayer", "emulator")
# flag bits of a model spectrum
MODEL_BAD_LABELS = 1  # a required label is NaN/inf (e.g. the networks gave no label)
MODEL_OUT_OF_RANGE = 2  # a label lies outside the engine's range: no model is made
MODEL_NOT_COVERED = 4  # some grid pixels lie outside the engine's wavelength coverage (NaN there)
MODEL_FAILED = 8  # the engine raised for this star (logged)

REQUIRED = {"teff": ("TEFF",), "logg": ("LOGG",), "feh": ("FE_H", "FEH")}
# engine label → table column (the bundle's / Gaia-ESO names)
COLUMNS = {"teff": "TEFF", "logg": "LOGG", "feh": "FE_H", "mg_fe": "MG_FE", "al_fe": "AL_FE",
           "alpha_fe": "ALPHA_FE", "vmic": "VMIC", "vsini": "VSINI"}
DEFAULT_VSINI = 2.5  # km/s, the mock population's median v sin i
MARGIN = 3.0  # Å synthesised beyond each setup edge (≫ the broadening kernel) and then cut


def default_engine(emulator=None) -> str:
    """The engine `predict --model-spectra` uses when none is named: the emulator when one loads.

    The emulator is the better physics (PySME, depth-dependent atmospheres; it halves the flux gap to
    the real Sun, README "Sim-to-real") and it renders the mock survey by default, so a mock-trained
    ensemble is judged against the physics it learnt. Name `onelayer` for ensembles trained on a
    one-layer mock (`synth survey --engine onelayer`, or surveys made before 2026-11-30 20:30 UTC).
    Without an emulator file the one-layer engine always works.
    """
    from .emulator import Emulator

    try:
        emulator = emulator or Emulator.load()
    except Exception as e:  # no shipped emulator: the one-layer engine always works
        log.warning("no emulator available (%s); default model-spectrum engine: onelayer", e)
        return "onelayer"
    return "emulator"


@dataclass
class ModelSpectra:
    """Model flux (N, P) on `grid`, a flag per star (MODEL_* bits), the labels used, and where they came from."""

    flux: np.ndarray
    flag: np.ndarray
    labels: Table
    engine: str
    provenance: dict
    defaults: dict = field(default_factory=dict)


def _column(table: Table, names: tuple[str, ...]):
    for n in names:
        if n in table.colnames:
            return np.asarray(table[n], dtype=float)
    return None


def engine_labels(table: Table) -> tuple[Table, dict]:
    """(labels in engine units: teff, logg, feh, mg_fe, al_fe, alpha_fe, vmic, vsini; the defaults used).

    Raises KeyError naming a missing required column."""
    from .engine import microturbulence

    out = Table()
    for key, names in REQUIRED.items():
        v = _column(table, names)
        if v is None:
            raise KeyError(f"label table has no column {names[0]}"
                           + (f" (or {', '.join(names[1:])})" if len(names) > 1 else "")
                           + f": a model spectrum needs {', '.join(n[0] for n in REQUIRED.values())}; "
                           f"it has {', '.join(table.colnames)}")
        out[key] = v
    n = len(table)
    defaults = {}

    def optional(col, fallback, why):
        v = _column(table, (col,))
        if v is None:
            defaults[col] = why
            return np.asarray(fallback, float) * np.ones(n)
        bad = ~np.isfinite(v)
        if bad.any():  # e.g. a catalogue VSINI left empty: the default for those rows
            defaults[col] = f"{why} for {int(bad.sum())} non-finite rows"
            v = np.where(bad, fallback, v)
        return v

    out["mg_fe"] = optional("MG_FE", 0.0, "0 (solar-scaled)")
    out["al_fe"] = optional("AL_FE", 0.0, "0 (solar-scaled)")
    out["alpha_fe"] = optional("ALPHA_FE", 0.8 * out["mg_fe"], "0.8 MG_FE (the mock population)")
    out["vmic"] = optional("VMIC", microturbulence(np.nan_to_num(out["teff"]), np.nan_to_num(out["logg"])),
                           "engine.microturbulence(TEFF, LOGG)")
    out["vsini"] = optional("VSINI", DEFAULT_VSINI, f"{DEFAULT_VSINI} km/s (mock population median)")
    return out, defaults


def label_range(engine: str, emulator=None) -> dict[str, tuple[float, float]]:
    """{label: (lo, hi)} inside which `engine` makes a model (v sin i is not limited)."""
    if engine == "emulator":
        from .emulator import LABELS

        return {k: (float(lo), float(hi)) for k, lo, hi in zip(LABELS, emulator.lo, emulator.hi)}
    from .pysme_grid import BOUNDS

    return {k: v for k, v in BOUNDS.items() if k != "vmic"}  # one-layer: vmic follows from Teff, log g


def _resolutions(grid: Grid, resolution: dict | None) -> dict[str, float | None]:
    out = {}
    for s in grid.setups:
        r = (resolution or {}).get(s.name) or setup_resolution(s.name)
        out[s.name] = float(r) if r else None
    return out


def setup_warnings(provenance: dict, grid: Grid) -> list[str]:
    """What a `model_spectra` result cannot model on this grid (from its provenance), as sentences."""
    out = [f"setup {s} has no resolving power: its model spectra are not instrument-broadened"
           for s, r in provenance.get("resolution", {}).items() if not r]
    cover = provenance.get("emulator_covers")
    if cover is not None and len(cover) < len(grid.setups):
        out.append(f"the emulator covers only {sorted(cover) or 'none'} of this grid's setups {grid.names}: "
                   "the others get NaN models")
    return out


def _onelayer_star(lab, grid: Grid, res: dict) -> np.ndarray:
    from .engine import synthesize

    parts = []
    for s in grid.setups:
        k = int(np.ceil(MARGIN / s.step))
        w = s.start + s.step * np.arange(-k, s.n_pixels + k)
        f = synthesize(w, lab["teff"], lab["logg"], lab["feh"],
                       {"Mg": lab["mg_fe"], "Al": lab["al_fe"], "Si": lab["alpha_fe"], "Ca": lab["alpha_fe"],
                        "Ti": lab["alpha_fe"]}, vsini=lab["vsini"], resolution=res[s.name], vmic=lab["vmic"])
        parts.append(f[k:-k])
    return np.concatenate(parts)


def _emulator_star(native: dict, lab, grid: Grid, res: dict) -> np.ndarray:
    from .emulated import observe
    from .engine import macroturbulence

    vmac = float(macroturbulence(lab["teff"], lab["logg"]))
    parts = []
    for s in grid.setups:
        if s.name not in native:
            parts.append(np.full(s.n_pixels, np.nan))
            continue
        w, f = native[s.name]
        parts.append(observe(w, f, s.wavelength, res[s.name], vmac, lab["vsini"]))
    return np.concatenate(parts)


def emulator_coverage(grid: Grid) -> dict[str, str]:
    """{setup: native emulator setup} for the grid setups lying inside one of the emulator's native grids."""
    from .emulator import EMU_GRID, emu_wavelength

    out = {}
    for s in grid.setups:
        for name in EMU_GRID:
            w = emu_wavelength(name)
            if w[0] <= s.start and s.wavelength[-1] <= w[-1]:
                out[s.name] = name
    return out


def model_spectra(labels: Table, grid: Grid, engine: str = "onelayer", resolution: dict | None = None,
                  emulator=None, chunk: int = 256, warn: bool = True) -> ModelSpectra:
    """Model flux on `grid` for every row of `labels` (see the module docstring for columns and flags).

    `resolution`: {setup: R} overriding the setups' nominal resolving powers (e.g. a dataset's
    prepare settings); `emulator`: an `Emulator` (default: `Emulator.load()`, the shipped one);
    `warn`: log how many stars got no model (a caller working in chunks says it once itself)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown model-spectrum engine {engine!r}; choose one of {ENGINES}")
    lab, defaults = engine_labels(labels)
    res = _resolutions(grid, resolution)
    provenance: dict = {"engine": engine, "resolution": res}
    if engine == "emulator":
        from .emulator import LABELS, Emulator, emu_wavelength

        emulator = emulator or Emulator.load()
        provenance["emulator"] = emulator.provenance
        cover = emulator_coverage(grid)
        provenance["emulator_covers"] = cover
    else:
        from .engine import LOG_K

        provenance["onelayer"] = {"module": "starlabel.mock.engine", "log_k": LOG_K,
                                  "conventions": "mock.survey.render_star: vmac = engine.macroturbulence, "
                                                 "[Si/Fe] = [Ca/Fe] = [Ti/Fe] = ALPHA_FE"}
    rng = label_range(engine, emulator)
    provenance["label_range"] = rng
    n = len(lab)
    flux = np.full((n, grid.n_pixels), np.nan, dtype=np.float32)
    flag = np.zeros(n, np.uint8)
    cols = ("teff", "logg", "feh", "mg_fe", "al_fe", "alpha_fe", "vmic", "vsini")
    values = np.column_stack([np.asarray(lab[c], float) for c in cols])
    flag[~np.isfinite(values).all(1)] |= MODEL_BAD_LABELS
    inside = np.ones(n, bool)
    for k, (lo, hi) in rng.items():
        v = np.asarray(lab[k], float)
        inside &= ~(np.isfinite(v) & ((v < lo) | (v > hi)))
    flag[~inside] |= MODEL_OUT_OF_RANGE
    if engine == "emulator" and len(cover) < len(grid.setups):
        flag |= MODEL_NOT_COVERED
    todo = np.flatnonzero((flag & (MODEL_BAD_LABELS | MODEL_OUT_OF_RANGE)) == 0)
    if warn:
        for w in setup_warnings(provenance, grid):
            log.warning(w)
        if n - todo.size:
            log.warning("%d of %d stars get no model spectrum (labels non-finite or outside the %s engine's range)",
                        n - todo.size, n, engine)
    for i0 in range(0, todo.size, chunk):
        rows = todo[i0 : i0 + chunk]
        if engine == "emulator":
            raw = emulator.flux(values[rows][:, : len(LABELS)])
        for j, i in enumerate(rows):
            star = dict(zip(cols, values[i]))
            try:
                if engine == "onelayer":
                    flux[i] = _onelayer_star(star, grid, res)
                else:
                    native = {s: (emu_wavelength(e), raw[j][emulator.slices[e]]) for s, e in cover.items()}
                    flux[i] = _emulator_star(native, star, grid, res)
            except Exception as e:  # one bad star never stops the batch
                log.warning("row %d: %s engine failed (%s); model left NaN", i, engine, e)
                flag[i] |= MODEL_FAILED
    used = Table(lab, copy=True)
    return ModelSpectra(flux, flag, used, engine, provenance, defaults)
