"""Atomic line lists: the list shipped with starlabel, the raw MOOG/Turbospectrum formats, and the
lines the paper's Mg and Al abundances come from.

`read_linelist()` returns the packaged table (src/starlabel/data/linelist.ecsv): real lines
from linemake (Placco et al. 2021) with van der Waals / radiative damping from VALD
(Ryabchikova et al. 2015) where VALD has them, keeping the few hundred lines per window that
are strongest in a set of reference FGK stars (`starlabel.mock.linelist.derive_linelist` rebuilds
it). The mock survey synthesises with it; the explain stage identifies gradient peaks with it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..labels import SOLAR_GAS07

# Lines GES used for Mg and Al (paper Fig. 11 caption; Heiter et al. 2021), marked on the figure.
PAPER_LINES = {"Mg I": (5528.41, 8717.81, 8736.02, 8806.756), "Al I": (5557.06, 8772.87, 8773.90)}


@lru_cache(maxsize=1)
def _cached() -> Table:
    path = resources.files("starlabel") / "data" / "linelist.ecsv"
    with resources.as_file(path) as p:
        return Table.read(p, format="ascii.ecsv")


def read_linelist() -> Table:
    """SPECIES ('Mg I'), ELEMENT, ION (1 neutral, 2 singly ionised), WAVELENGTH (air Å), EP (eV),
    LOGGF, LOG_GAMMA6 (log van der Waals width per H atom at 10⁴ K, cm³/s), LOG_GAMMA_RAD (log s⁻¹),
    SETUP (HR10/HR21). Sorted by wavelength. Returns a copy, safe to modify."""
    return _cached().copy()


def read_moog(path: Path) -> Table:
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        try:
            vals = [float(x) for x in parts[:5]]
        except ValueError:
            continue
        rows.append(vals[:4] + [vals[4] if len(vals) > 4 else 0.0])
    a = np.array(rows)
    return Table({"wave": a[:, 0], "code": a[:, 1], "ep": a[:, 2], "loggf": a[:, 3], "damp": a[:, 4]})


def read_turbospectrum(path: Path) -> list[tuple]:
    """(element, ion, wave, ep, log_gamma6 or nan, gamma_rad) for atomic species we know."""
    out, species = [], None
    lines = Path(path).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("'"):
            if i + 1 < len(lines) and lines[i + 1].startswith("'"):
                continue  # the code line; the name line follows
            name = line.strip("' ").split()
            species = (name[0], len(name[1])) if len(name) == 2 and name[1] in ("I", "II") else None
            continue
        if species is None:
            continue
        p = line.split()
        w, ep, vdw, grad = float(p[0]), float(p[1]), float(p[3]), float(p[5])
        out.append((species[0], species[1], w, ep, vdw if vdw < 0 else np.nan, grad))
    return out


def label_element(name: str) -> str | None:
    """The element a label measures ('MG_FE' → 'Mg', 'AL1' → 'Al', 'FE_H' → 'Fe'); None for TEFF, LOGG."""
    head = name.split("_")[0].rstrip("0123456789")
    el = head[:1].upper() + head[1:].lower()
    return el if el in SOLAR_GAS07 and name.upper() not in ("TEFF", "LOGG") else None
