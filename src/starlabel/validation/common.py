"""Shared plumbing of the validation analyses: column checks, joins, NaN-safe statistics, atomic writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..io.atomic import atomic_path, write_json
from ..labels import add_relative_labels, float_column

log = logging.getLogger(__name__)

LABELS = ("TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE")


class MissingColumnError(KeyError):
    """A table lacks a column an analysis needs (the message names the table and the column)."""

    def __str__(self):  # KeyError would quote the whole message
        return str(self.args[0])


def require(table: Table, columns, what: str, analysis: str) -> None:
    """Raise MissingColumnError naming every missing column of `table` (called `what`)."""
    missing = [c for c in columns if c not in table.colnames]
    if missing:
        raise MissingColumnError(f"validate {analysis}: {what} has no column(s) {missing} "
                                 f"(it has {table.colnames[:25]}{' …' if len(table.colnames) > 25 else ''})")


def strings(col) -> np.ndarray:
    """A (possibly masked, possibly bytes) column as stripped str; masked → ''."""
    vals = col.filled("") if hasattr(col, "filled") and getattr(col, "mask", None) is not None else col
    return np.array([(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in vals], dtype=str)


def fcol(table: Table, name: str) -> np.ndarray:
    """Float column (masked → NaN); all NaN when absent."""
    return float_column(table, name) if name in table.colnames else np.full(len(table), np.nan)


def read_table(path_or_table, what: str = "table") -> Table:
    if isinstance(path_or_table, Table):
        return path_or_table
    path = Path(path_or_table)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unit strings such as 'dex' in GES tables
        return Table.read(path)


def catalogue_labels(catalogue: Table) -> Table:
    """The catalogue with FE_H, MG_FE, AL_FE (from FE1/MG1/AL1) when it does not have them yet.

    Falls back to FEH as FE_H when FE1 is absent (reference tables such as the benchmarks')."""
    cat = catalogue
    if "FE_H" not in cat.colnames:
        cat = cat.copy(copy_data=False)
        if {"FE1", "MG1", "AL1"} <= set(cat.colnames):
            add_relative_labels(cat)
        elif "FEH" in cat.colnames:
            cat["FE_H"] = fcol(cat, "FEH")
    return cat


def join(labels: Table, catalogue: Table, analysis: str, columns=()) -> Table:
    """`labels` (predict output) with the named catalogue columns appended as CAT_<col>, by CNAME.

    Labels rows without a catalogue match get NaN / '' (logged)."""
    require(labels, ["CNAME"], "the labels table", analysis)
    require(catalogue, ["CNAME", *columns], "the catalogue", analysis)
    from ..io.tables import index_of

    j = index_of(strings(labels["CNAME"]), strings(catalogue["CNAME"]))
    if np.any(j < 0):
        log.warning("validate %s: %d of %d labelled spectra are not in the catalogue", analysis,
                    int(np.sum(j < 0)), len(j))
    out = Table(labels, copy=False)
    out = out.copy(copy_data=False)
    for c in columns:
        col = catalogue[c]
        if col.dtype.kind in "SUO":
            v = strings(col)
            out[f"CAT_{c}"] = np.where(j >= 0, v[np.maximum(j, 0)], "")
        else:
            v = fcol(catalogue, c)
            out[f"CAT_{c}"] = np.where(j >= 0, v[np.maximum(j, 0)], np.nan)
    return out


def bias_scatter(x, ref) -> tuple[float, float, int]:
    """Mean and standard deviation of x − ref over finite pairs (NaN, NaN, 0 when none)."""
    d = np.asarray(x, float) - np.asarray(ref, float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return np.nan, np.nan, 0
    return float(d.mean()), float(d.std(ddof=1)) if d.size > 1 else 0.0, int(d.size)


def linear_fit(x, y) -> tuple[float, float, float, int]:
    """(slope, slope error, intercept, n) of y = a + b x over finite pairs; NaNs when n < 3."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0:
        return np.nan, np.nan, np.nan, n
    (b, a), cov = np.polyfit(x[ok], y[ok], 1, cov=True) if n > 3 else (np.polyfit(x[ok], y[ok], 1), None)
    err = float(np.sqrt(cov[0, 0])) if cov is not None else np.nan
    return float(b), err, float(a), n


def inner_flags(table: Table) -> np.ndarray:
    """INNER as bool (True when the column is absent: without a map every spectrum counts as inner)."""
    if "INNER" not in table.colnames:
        return np.ones(len(table), bool)
    c = table["INNER"]
    return np.asarray(c.filled(False) if hasattr(c, "filled") else c, bool)


def meta_safe(d: dict) -> dict:
    """Metadata that survives a FITS header: scalars kept, everything else as JSON text."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, np.bool_, int, np.integer, str)) or (isinstance(v, (float, np.floating))
                                                                     and np.isfinite(v)):
            out[k.upper()] = v.item() if hasattr(v, "item") else v
        else:
            out[k.upper()] = json.dumps(v, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    return out


def write(table: Table, path) -> Path:
    """Write `table` atomically: FITS for .fits, plain CSV (meta as a JSON sidecar) otherwise."""
    path = Path(path)
    t = Table(table, copy=False)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".fits", ".fit"):
            t = t.copy(copy_data=False)
            t.meta = meta_safe(dict(table.meta))
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # long HIERARCH keywords
                t.write(tmp, format="fits")
        else:
            t.write(tmp, format="ascii.csv")
    if path.suffix.lower() == ".csv" and table.meta:
        write_json(path.with_suffix(".meta.json"), dict(table.meta), indent=1, default=str)
    return path


class Validation:
    """What an analysis returns: `table` (one row per star/member/orbit) and `summary` (the numbers),
    both carrying the cuts and settings in `.meta`."""

    def __init__(self, name: str, table: Table, summary: Table, meta: dict):
        self.name, self.table, self.summary = name, table, summary
        self.table.meta.update(meta)
        self.summary.meta.update(meta)

    @property
    def meta(self) -> dict:
        return dict(self.summary.meta)

    def write(self, out_dir) -> dict[str, Path]:
        """<name>.fits (per star) and <name>_summary.csv (+ .meta.json) in `out_dir`."""
        out_dir = Path(out_dir)
        return {"table": write(self.table, out_dir / f"{self.name}.fits"),
                "summary": write(self.summary, out_dir / f"{self.name}_summary.csv")}

    def __repr__(self):
        return f"Validation({self.name!r}, {len(self.table)} rows, summary {len(self.summary)} rows)"
