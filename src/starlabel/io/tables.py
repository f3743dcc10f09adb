"""Small table helpers shared by the stages: CSV written atomically, rows matched by CNAME."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from .atomic import atomic_path


def write_csv(table: Table, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        table.write(tmp, format="ascii.csv", overwrite=True)
    return path


def index_of(keys_from, keys_to) -> np.ndarray:
    """For each key in keys_from, the first row of keys_to with that key (−1 when absent)."""
    first = {}
    for i, k in enumerate(keys_to):
        first.setdefault(k, i)
    return np.array([first.get(k, -1) for k in keys_from], dtype=int)
