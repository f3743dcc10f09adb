"""Warnings about FITS spectra that are read but incomplete.

A FITS file is a whole number of 2880-byte blocks. A GES spectrum cut short (an interrupted copy)
can keep its primary flux HDU intact while the ERROR extension is gone: every reader accepts it, and
the spectrum silently loses its uncertainties. `prepare` keeps such a star but lists the file in the
rejects table with a REASON starting with WARNING.
"""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 2880
WARNING = "WARNING (star kept)"


def is_warning(reason: str) -> bool:
    """Whether a rejects-table REASON is a warning about a kept star rather than a reject."""
    return str(reason).startswith(WARNING)


def truncation_warning(path, has_error: bool, header: dict) -> str | None:
    """A REASON line for an uncompressed FITS spectrum that is cut short or lost its error extension.

    A cut that ends exactly at the end of the flux HDU leaves a valid FITS file: for 1-D image
    spectra (the GES format, which always carries an error extension) a missing error array is
    reported too. Phase 3 tables and text files without errors are normal and pass silently."""
    path = Path(path)
    if not path.name.lower().endswith((".fits", ".fit", ".fts")):
        return None
    size = os.path.getsize(path)
    image = "CRVAL1" in header and "TTYPE1" not in header  # a 1-D image with a WCS, not a table
    if size % BLOCK:
        what = f"truncated FITS file ({size} bytes, not a whole number of {BLOCK}-byte blocks)"
    elif image and not has_error:
        what = f"FITS image spectrum without an error extension ({size} bytes: a truncated copy?)"
    else:
        return None
    lost = "its error extension is missing, the flux is used without errors" if not has_error else \
        "the data read look complete"
    return f"{WARNING}: {path}: {what}; {lost}"
