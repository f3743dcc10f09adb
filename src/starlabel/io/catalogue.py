"""Catalogue reader: FITS / CSV / ECSV / VOTable label tables as a clean astropy Table.

Survey catalogues arrive with bytes columns, padded strings, lower-case names and
masked values; every later stage wants plain columns. `read_catalogue` returns names
upper-cased, strings decoded and stripped, and masked values filled: NaN for floats,
'' for strings, False for booleans, and integer columns with masked entries become
float with NaN (so "missing" means the same thing everywhere).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table

PREPARE_COLUMNS = ("CNAME", "SETUP", "VRAD")


class CatalogueError(ValueError):
    """A catalogue that cannot be read or lacks a needed column; the message names the file."""


def _format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "ascii.csv"
    if name.endswith(".ecsv"):
        return "ascii.ecsv"
    if name.endswith((".txt", ".dat")):
        return "ascii"
    return None  # let astropy decide (FITS, VOTable, HDF5 …)


def _clean_column(col):
    kind = col.dtype.kind
    masked = isinstance(col, MaskedColumn) and np.any(col.mask)
    if kind in "SU":
        values = np.asarray(col.filled("") if masked else col)
        if kind == "S":
            values = np.char.decode(values, "utf-8", errors="replace")
        return np.char.strip(values.astype(str))
    if kind == "f":
        return np.asarray(col.filled(np.nan) if masked else col, dtype=col.dtype.newbyteorder("="))
    if kind in "iu":
        if masked:
            return np.asarray(col.astype(float).filled(np.nan))
        return np.asarray(col, dtype=col.dtype.newbyteorder("="))
    if kind == "b":
        return np.asarray(col.filled(False) if masked else col)
    return np.asarray(col)  # arrays, objects: leave as they are


def read_catalogue(path, required=()) -> Table:
    """Read a catalogue; raise CatalogueError naming the file and any missing `required` column."""
    path = Path(path)
    if not path.exists():
        raise CatalogueError(f"catalogue {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # units like 'dex' raise UnitsWarnings
            fmt = _format(path)
            raw = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as e:
        raise CatalogueError(f"catalogue {path} is unreadable ({type(e).__name__}: {e})") from e
    out = Table()
    for name in raw.colnames:
        col = raw[name]
        key = name.strip().upper()
        if key in out.colnames:
            raise CatalogueError(f"catalogue {path}: column {key!r} appears twice (ignoring case)")
        out[key] = _clean_column(col)
        if col.unit is not None and col.dtype.kind in "fiu":
            out[key].unit = col.unit
        out[key].description = col.description
    missing = [c for c in required if c not in out.colnames]
    if missing:
        raise CatalogueError(
            f"catalogue {path} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(it has {', '.join(out.colnames[:20])}{' …' if len(out.colnames) > 20 else ''})"
        )
    out.meta["CATALOGUE"] = str(path)
    return out


# ---------------------------------------------------------------- real releases: one row per star

_SPLIT = re.compile(r"[|,;/+\s]+")
MERGE_RULE = ("per CNAME, the row kept is the one whose SETUP names the most of the grid's setups, "
              "then the one with the most of TEFF, LOGG, FEH measured (the recommended parameters), "
              "then the highest SNR, then the first")


def setup_tokens(value) -> list[str]:
    """'HR10|HR21' → ['HR10', 'HR21']; 'GIRAFFE' → ['GIRAFFE']; '' → []."""
    return [t for t in _SPLIT.split(str(value).strip().upper()) if t]


def row_instruments(tokens: list[str]) -> set[str]:
    """Instruments a SETUP string names: a known setup's instrument or an instrument name itself."""
    from ..grid import INSTRUMENTS, setup_instrument
    from .spectra import EXP_MODES

    out = set()
    for t in tokens:
        t = EXP_MODES.get(t, t)
        if t in INSTRUMENTS:
            out.add(t)
        elif setup_instrument(t):
            out.add(setup_instrument(t))
        elif re.fullmatch(r"(HR|LR)\d+[A-Z]?", t):
            out.add("GIRAFFE")
    return out


def resolve_rows(cat: Table, grid) -> tuple[list[int], list[tuple[str, str, str, str]]]:
    """One catalogue row per star for `grid`: (rows kept, rejects (FILE, CNAME, SETUP, REASON)).

    Rules for real Gaia-ESO releases, which list a star once per instrument / setup / node:
    1. a row without CNAME is rejected;
    2. a row whose SETUP names only instruments the grid does not use (UVES rows for a GIRAFFE
       grid, GIRAFFE rows for the UVES 580 grid) is skipped as 'other instrument';
       a row with an empty or unknown SETUP is kept (its files decide);
    3. of several rows per CNAME, one is kept by MERGE_RULE; the others are rejected as 'merged'.
    """
    from ..labels import float_column

    n = len(cat)
    cnames = np.char.strip(np.asarray(cat["CNAME"]).astype(str)) if n else np.array([], str)
    setups = np.asarray(cat["SETUP"]).astype(str) if "SETUP" in cat.colnames else np.full(n, "")
    grid_names = set(grid.names)
    grid_instruments = grid.instruments
    rejects, candidates = [], {}
    for row in range(n):
        cname = cnames[row]
        tokens = setup_tokens(setups[row])
        if not cname:
            rejects.append(("", "", setups[row], f"catalogue row {row}: empty CNAME"))
            continue
        instruments = row_instruments(tokens)
        if instruments and grid_instruments and not (instruments & grid_instruments) \
                and not (set(tokens) & grid_names):
            rejects.append(("", cname, setups[row],
                            f"{cname}: catalogue row {row} is a {'/'.join(sorted(instruments))}-only row "
                            f"(SETUP '{setups[row]}'), other instrument than the grid's "
                            f"{'/'.join(sorted(grid_instruments))}: skipped"))
            continue
        candidates.setdefault(cname, []).append(row)
    measured = sum(np.isfinite(float_column(cat, c)).astype(int) for c in ("TEFF", "LOGG", "FEH")
                   if c in cat.colnames) if n else np.zeros(0)
    measured = np.broadcast_to(measured, (n,)) if n else measured
    snr = float_column(cat, "SNR") if "SNR" in cat.colnames else np.full(n, np.nan)
    keep = []
    for cname, rows in candidates.items():
        if len(rows) == 1:
            keep.append(rows[0])
            continue
        score = [(len(set(setup_tokens(setups[r])) & grid_names), int(measured[r]),
                  snr[r] if np.isfinite(snr[r]) else -np.inf, -r) for r in rows]
        best = rows[max(range(len(rows)), key=lambda i: score[i])]
        keep.append(best)
        for r in rows:
            if r != best:
                rejects.append(("", cname, setups[r],
                                f"{cname}: duplicate catalogue row {r} merged into row {best} "
                                f"(row {best} is prepared; rule: most grid setups in SETUP, most of "
                                f"TEFF/LOGG/FEH, highest SNR, first)"))
    return sorted(keep), rejects
