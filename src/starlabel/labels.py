"""Labels: solar abundances, A(X) → [Fe/H], [X/Fe], network scaling, and the paper's quality cuts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: keeps `import starlabel.labels` (and `starlabel --help`) light
    from astropy.table import Table

# Grevesse, Asplund & Sauval (2007, Space Sci. Rev. 130, 105), log eps(X), H = 12.
SOLAR_GAS07 = {
    "Fe": 7.45, "Mg": 7.53, "Al": 6.37, "Si": 7.51, "Ca": 6.31, "Ti": 4.90,
    "Cr": 5.64, "Ni": 6.23, "Na": 6.17, "Mn": 5.39, "Sc": 3.17, "V": 4.00, "Co": 4.92,
}

# catalogue column of the absolute abundance → element
ABUNDANCE_COLUMNS = {"FE1": "Fe", "MG1": "Mg", "AL1": "Al"}

# The paper's five labels, as produced by `add_relative_labels`.
DEFAULT_LABELS = ("TEFF", "LOGG", "MG_FE", "AL_FE", "FE_H")
UNITS = {"TEFF": "K", "LOGG": "dex", "FE_H": "dex", "MG_FE": "dex", "AL_FE": "dex",
         "FEH": "dex", "MG1": "dex", "AL1": "dex", "FE1": "dex"}
PRETTY = {"TEFF": r"$T_\mathrm{eff}$", "LOGG": r"$\log g$", "FE_H": "[Fe/H]",
          "MG_FE": "[Mg/Fe]", "AL_FE": "[Al/Fe]", "MG1": "A(Mg)", "AL1": "A(Al)", "FE1": "A(Fe)"}


def fe_h(a_fe):
    """[Fe/H] = A(Fe) − A(Fe)☉."""
    return np.asarray(a_fe, dtype=float) - SOLAR_GAS07["Fe"]


def x_fe(a_x, element: str, feh):
    """[X/Fe] = A(X) − A(X)☉ − [Fe/H]."""
    return np.asarray(a_x, dtype=float) - SOLAR_GAS07[element] - np.asarray(feh, dtype=float)


def float_column(table: Table, col: str) -> np.ndarray:
    """A catalogue column as a plain float array, masked entries as NaN."""
    c = table[col]
    return np.asarray(c.filled(np.nan) if hasattr(c, "filled") else c, dtype=float)


def float_column_at(table: Table, col: str, rows) -> np.ndarray:
    """`table[col]` as floats on `rows` (−1: no matching row → NaN, as `io.tables.index_of` gives);
    all NaN when the table has no such column."""
    rows = np.asarray(rows, dtype=int)
    v = np.full(len(rows), np.nan)
    if col in table.colnames:
        v[rows >= 0] = float_column(table, col)[rows[rows >= 0]]
    return v


def add_relative_labels(table: Table) -> Table:
    """Add FE_H, MG_FE, AL_FE (and their errors) computed from FE1, MG1, AL1. Returns the table."""
    for col in ("FE1", "MG1", "AL1"):
        if col not in table.colnames:
            raise KeyError(f"catalogue has no column {col!r} (needed for [Fe/H], [Mg/Fe], [Al/Fe])")
    feh = fe_h(float_column(table, "FE1"))
    table["FE_H"] = feh
    table["MG_FE"] = x_fe(float_column(table, "MG1"), "Mg", feh)
    table["AL_FE"] = x_fe(float_column(table, "AL1"), "Al", feh)
    e_fe = float_column(table, "E_FE1") if "E_FE1" in table.colnames else np.full(len(table), np.nan)
    table["E_FE_H"] = e_fe
    for x, col in (("MG", "MG1"), ("AL", "AL1")):
        e = float_column(table, f"E_{col}") if f"E_{col}" in table.colnames else np.full(len(table), np.nan)
        table[f"E_{x}_FE"] = np.hypot(e, e_fe)
    return table


@dataclass
class LabelSet:
    """Label names and their linear scaling to network space (zero mean, unit spread)."""

    names: tuple[str, ...] = DEFAULT_LABELS
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()

    @classmethod
    def fit(cls, names, values: np.ndarray) -> "LabelSet":
        """Mean and spread of each label over its known values (a missing label is NaN)."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(f"labels array has shape {values.shape}, expected (N, {len(names)})")
        if np.isinf(values).any():
            bad = [n for n, inf in zip(names, np.isinf(values).any(0)) if inf]
            raise ValueError(f"labels {bad} contain inf; select a clean training set first")
        known = np.isfinite(values)
        if not known.any(0).all():
            bad = [n for n, ok in zip(names, known.any(0)) if not ok]
            raise ValueError(f"labels {bad} have no known value in the training set")
        scale = np.nanstd(values, 0)
        scale[scale == 0] = 1.0
        return cls(tuple(names), tuple(np.nanmean(values, 0).tolist()), tuple(scale.tolist()))

    def to_network(self, values):
        return ((np.asarray(values, dtype=float) - self.mean) / self.scale).astype(np.float32)

    def from_network(self, values):
        return np.asarray(values, dtype=float) * self.scale + self.mean

    def to_dict(self) -> dict:
        d = asdict(self)
        d["names"] = list(self.names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSet":
        return cls(tuple(d["names"]), tuple(d["mean"]), tuple(d["scale"]))


def label_matrix(table: Table, names) -> np.ndarray:
    """(N, L) float array of the named catalogue columns (masked → NaN)."""
    missing = [n for n in names if n not in table.colnames]
    if missing:
        raise KeyError(f"catalogue has no label column(s) {missing}; it has {table.colnames}")
    return np.column_stack([float_column(table, n) for n in names])


@dataclass
class QualityCuts:
    """The paper's training-set cuts (Sect. 2.2); each can be changed or switched off (None)."""

    min_snr: float | None = 30.0
    max_e_teff: float | None = 200.0
    max_e_logg: float | None = 0.3
    max_e_abundance: float | None = 0.2
    no_flags: bool = True
    max_vsini: float | None = 20.0
    max_feh_mismatch: float | None = 0.2
    observed_min_snr: float = 10.0
    partial_abundances: bool = False  # Mg, Al failing their error cut leave the star a training candidate
    extra: dict = field(default_factory=dict)

    def masks(self, table: Table) -> list[tuple[str, np.ndarray]]:
        """(name, passes) per cut, in the order they are applied. NaN fails a cut."""
        out = []
        col = lambda c: float_column(table, c)  # noqa: E731
        with np.errstate(invalid="ignore"):
            if self.min_snr is not None:
                out.append((f"S/N >= {self.min_snr:g}", col("SNR") >= self.min_snr))
            if self.max_e_teff is not None:
                out.append((f"E_TEFF <= {self.max_e_teff:g} K", col("E_TEFF") <= self.max_e_teff))
            if self.max_e_logg is not None:
                out.append((f"E_LOGG <= {self.max_e_logg:g}", col("E_LOGG") <= self.max_e_logg))
            if self.max_e_abundance is not None:
                ok = np.ones(len(table), bool)
                for c in ("E_FE1",) if self.partial_abundances else ("E_FE1", "E_MG1", "E_AL1"):
                    ok &= col(c) <= self.max_e_abundance
                out.append((f"{'E_FE1' if self.partial_abundances else 'abundance errors'} <= "
                            f"{self.max_e_abundance:g} dex", ok))
            if self.no_flags:
                out.append(("no TECH/PECULI flag", ~(_flagged(table, "TECH") | _flagged(table, "PECULI"))))
            if self.max_vsini is not None:
                v = col("VSINI")
                out.append((f"VSINI <= {self.max_vsini:g} km/s", ~(v > self.max_vsini)))
            if self.max_feh_mismatch is not None:
                d = np.abs(col("FEH") - fe_h(col("FE1")))
                out.append((f"|FEH - [Fe/H](FE1)| <= {self.max_feh_mismatch:g}", d <= self.max_feh_mismatch))
            for name, expr in self.extra.items():
                out.append((name, np.asarray(expr(table), bool)))
        return out

    def unusable_abundances(self, table: Table) -> dict[str, np.ndarray]:
        """With `partial_abundances`: {label: rows whose [Mg/Fe] or [Al/Fe] is missing or fails the
        abundance error cut}; those labels are not trained on (the star trains on the others)."""
        if not self.partial_abundances or self.max_e_abundance is None:
            return {}
        with np.errstate(invalid="ignore"):
            return {label: ~(float_column(table, err) <= self.max_e_abundance)
                    for label, err in (("MG_FE", "E_MG1"), ("AL_FE", "E_AL1"))}


def _flagged(table: Table, col: str) -> np.ndarray:
    """True where a string flag column holds anything but blanks (masked = not flagged)."""
    if col not in table.colnames:
        return np.zeros(len(table), bool)
    c = table[col]
    vals = c.filled("") if hasattr(c, "filled") else c
    return np.array([str(v.decode() if isinstance(v, bytes) else v).strip() not in ("", "--") for v in vals])
