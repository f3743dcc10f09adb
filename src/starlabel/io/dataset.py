"""The prepared dataset: one HDF5 file holding every star's resampled spectrum.

Layout (every stage after `prepare` reads this, `select` writes the same layout):

    /flux        float32 (N, P)  continuum-normalised flux on the grid, chunked by rows
    /mask        uint8   (N, P)  bit flags per pixel (see MASK_*); 0 = good
    /error       float32 (N, P)  optional: 1σ error of /flux (NaN: unknown, e.g. a file without errors,
                                 a repaired or uncovered pixel); `prepare` writes it unless --no-errors
    /wavelength  float64 (P,)    air wavelength of each pixel [Å]
    /catalogue   table, N rows   the catalogue rows, in the same order as /flux
    /rejects     table           FILE, CNAME, SETUP, REASON for every spectrum left out
    attrs        grid (JSON), settings (JSON), starlabel_version, created

Stages read it in row chunks (`Dataset.iter_chunks`) so memory stays bounded.
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from astropy.table import Table

from .. import __version__
from ..grid import Grid
from .atomic import atomic_path

MASK_REPAIRED = 1  # spike or zero-flux pixel replaced by the median
MASK_UNCOVERED = 2  # grid pixel outside the observed spectrum (filled with 1)
MASK_NAN = 4  # non-finite input pixel (or inverse variance <= 0)
MASK_MISSING_SETUP = 8  # the star has no spectrum in this setup (filled with 1; catalogue MISSING_SETUP)

REJECT_COLUMNS = ("FILE", "CNAME", "SETUP", "REASON")


def stamp(h5: h5py.File) -> None:
    """Record which starlabel version wrote an HDF5 output, and when."""
    h5.attrs["starlabel_version"] = __version__
    h5.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat()


def empty_rejects() -> Table:
    return Table(names=REJECT_COLUMNS, dtype=(str, str, str, str))


def write_table(group: h5py.Group, name: str, table: Table) -> None:
    table = Table(table, copy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table.write(group, path=name, serialize_meta=True)


def read_table(group: h5py.Group, name: str) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(group, path=name, character_as_bytes=False)
    return t


class DatasetWriter:
    """Stream rows into a new dataset file; the file appears atomically on `close()`.

    Use as a context manager: an exception leaves no output behind.
    """

    def __init__(self, path, grid: Grid, settings: dict | None = None, chunk_rows: int = 256,
                 errors: bool = False):
        self.path = Path(path)
        self.grid = grid
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._h5 = h5py.File(self._tmp, "w")
        p = grid.n_pixels
        self._flux = self._h5.create_dataset(
            "flux", shape=(0, p), maxshape=(None, p), dtype="f4", chunks=(chunk_rows, p)
        )
        self._mask = self._h5.create_dataset(
            "mask", shape=(0, p), maxshape=(None, p), dtype="u1", chunks=(chunk_rows, p),
            compression="lzf",
        )
        self._error = self._h5.create_dataset(  # doubles the file: only when asked for
            "error", shape=(0, p), maxshape=(None, p), dtype="f4", chunks=(chunk_rows, p)) if errors else None
        self._h5.create_dataset("wavelength", data=grid.wavelength)
        self._h5.attrs["grid"] = grid.to_json()
        self._h5.attrs["settings"] = json.dumps(settings or {}, default=str)
        stamp(self._h5)
        self.n = 0

    def append(self, flux: np.ndarray, mask: np.ndarray, error: np.ndarray | None = None) -> None:
        """Rows of flux and mask (and of 1σ error, for a writer made with errors=True; NaN rows
        when it is None there)."""
        flux = np.atleast_2d(flux)
        mask = np.atleast_2d(mask)
        k = len(flux)
        if error is not None and self._error is None:
            raise ValueError("error rows given to a DatasetWriter made without errors=True")
        if k == 0:
            return
        self._flux.resize(self.n + k, axis=0)
        self._mask.resize(self.n + k, axis=0)
        self._flux[self.n : self.n + k] = flux
        self._mask[self.n : self.n + k] = mask
        if self._error is not None:
            self._error.resize(self.n + k, axis=0)
            self._error[self.n : self.n + k] = np.nan if error is None else np.atleast_2d(error)
        self.n += k

    def close(self, catalogue: Table, rejects: Table | None = None) -> Path:
        if len(catalogue) != self.n:
            raise ValueError(f"catalogue has {len(catalogue)} rows but {self.n} spectra were written")
        write_table(self._h5, "catalogue", catalogue)
        write_table(self._h5, "rejects", rejects if rejects is not None else empty_rejects())
        self._h5.close()
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        self._h5.close()
        self._atomic.__exit__(Exception, Exception(), None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


class Dataset:
    """Read access to a dataset file; opens the HDF5 file lazily per call."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"dataset {self.path} does not exist")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [k for k in ("flux", "mask", "wavelength", "catalogue") if k not in f]
                if missing:
                    raise ValueError(f"{self.path} is not a starlabel dataset: missing {missing}")
                self.grid = Grid.from_json(f.attrs["grid"])
                self.settings = json.loads(f.attrs.get("settings", "{}"))
                self.n, self.n_pixels = f["flux"].shape
                self.has_error = "error" in f and f["error"].shape == f["flux"].shape
                self.catalogue = read_table(f, "catalogue")
                self.rejects = read_table(f, "rejects") if "rejects" in f else empty_rejects()
        except OSError as e:
            raise ValueError(f"{self.path} is not a readable HDF5 file: {e}") from e

    def __len__(self) -> int:
        return self.n

    @property
    def wavelength(self) -> np.ndarray:
        return self.grid.wavelength

    def rows(self, **equals) -> np.ndarray:
        """Row indices whose catalogue columns equal the given values, e.g. rows(SET='train')."""
        keep = np.ones(self.n, bool)
        for col, value in equals.items():
            keep &= np.asarray(self.catalogue[col]) == value
        return np.flatnonzero(keep)

    def read(self, rows=None, mask: bool = False):
        """Flux (and mask) for `rows` (all rows when None) as float32 arrays."""
        with h5py.File(self.path, "r") as f:
            if rows is None:
                flux = f["flux"][...]
                m = f["mask"][...] if mask else None
            else:
                rows = np.asarray(rows)
                order = np.argsort(rows)
                inv = np.empty_like(order)
                inv[order] = np.arange(len(order))
                flux = f["flux"][rows[order]][inv] if len(rows) else np.empty((0, self.n_pixels), "f4")
                m = (f["mask"][rows[order]][inv] if len(rows) else np.empty((0, self.n_pixels), "u1")) if mask else None
        return (flux, m) if mask else flux

    def read_error(self, rows=None) -> np.ndarray | None:
        """The 1σ error spectra (float32, NaN where unknown) for `rows` (all when None), in the order
        of `rows`; None when the dataset has no /error (written before it existed, or --no-errors)."""
        if not self.has_error:
            return None
        with h5py.File(self.path, "r") as f:
            if rows is None:
                return f["error"][...]
            rows = np.asarray(rows)
            if not len(rows):
                return np.empty((0, self.n_pixels), "f4")
            order = np.argsort(rows)
            inv = np.empty_like(order)
            inv[order] = np.arange(len(order))
            return f["error"][rows[order]][inv]

    def iter_chunks(self, chunk: int = 1024, rows=None, mask: bool = False, error: bool = False) -> Iterator[tuple]:
        """Yield (row_indices, flux[, mask][, error]) in chunks of at most `chunk` rows (`error`:
        None per chunk when the dataset has no /error)."""
        rows = np.arange(self.n) if rows is None else np.sort(np.asarray(rows))
        with h5py.File(self.path, "r") as f:
            for i in range(0, len(rows), chunk):
                r = rows[i : i + chunk]
                sl = slice(r[0], r[-1] + 1) if len(r) and r[-1] - r[0] + 1 == len(r) else r
                out = (r, f["flux"][sl])
                if mask:
                    out += (f["mask"][sl],)
                if error:
                    out += (f["error"][sl] if self.has_error else None,)
                yield out


def write_dataset(path, grid: Grid, flux, mask, catalogue: Table, rejects: Table | None = None,
                  settings: dict | None = None, chunk: int = 1024, error=None) -> Path:
    """Write a whole dataset from arrays (or from (flux, mask) chunk iterables via DatasetWriter);
    `error`: optional (N, P) 1σ errors, written as /error."""
    with DatasetWriter(path, grid, settings, errors=error is not None) as w:
        for i in range(0, len(flux), chunk):
            w.append(flux[i : i + chunk], mask[i : i + chunk], None if error is None else error[i : i + chunk])
        return w.close(catalogue, rejects)
