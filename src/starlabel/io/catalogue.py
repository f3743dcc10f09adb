"""Catalogue reader: FITS / CSV / ECSV / VOTable label tables as a clean astropy Table.

Survey catalogues arrive with bytes columns, padded strings, lower-case names and
masked values; every later stage wants plain columns. `read_catalogue` returns names
upper-cased, strings decoded and stripped, and masked values filled: NaN for floats,
'' for strings, False for booleans, and integer columns with masked entries become
float with NaN (so "missing" means the same thing everywhere).
"""

from __future__ import annotations

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
