"""VALD atomic line data next to linemake: damping constants, and VALD's own log gf and lines.

The PySME engine starts from the linemake lists (Placco et al. 2021), which carry no damping
constants. `read_vald_atomic` reads the VALD extracts in ../shared/data/linelists — the HR21
Turbospectrum files (all elements) and the per-element MOOG files that cover HR10 (21 elements; no
Ti, V, Cr, Mn, Co, Ni) — and `merge_vald` copies what VALD knows onto the linemake lines of the same
species within 0.02 Å and 0.03 eV:

* always (``damping="vald"``): van der Waals and radiative damping;
* with ``gf=True`` (``PysmeSettings(gf_source="vald")``, the default since 2026-12-01): VALD's log gf, and VALD's lines of the
  species it covers that linemake lacks. This is a choice between two laboratory compilations, not a
  fit to any star. Why: linemake carries high-excitation lines with log gf far from VALD's (the Si I
  5.6-eV lines at 5404.66, 5488.98, 5493.88 Å by +2 dex, making them 20 % deep where the real Sun
  shows 6–10 %), and 204 of its 963 HR10 lines with a VALD partner differ by more than 1 dex.

Only real damping constants are copied: Turbospectrum's fdamp < 0 (log γ6) or > 20
(Anstee–Barklem–O'Mara σ.α); 0 < fdamp < 20 are Unsöld enhancement factors, which SME would misread,
and γ_rad = 1e5 s⁻¹ is VALD's placeholder. Hydrogen stays linemake's (SME needs its own treatment).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

HR10_VALD_DIR = "vald_3800-7400A_by_element_moog"
HR10_RANGE = (5300.0, 5650.0)  # the per-element files span 3800-7400 Å; only HR10 is read
MAX_EXCITATION = 12.0  # eV; lower levels above this are unpopulated in FGK stars (Boltzmann < 1e-8)


def element_and_stage(code: float) -> tuple[int, int]:
    """MOOG species code (26.1) → (Z=26, ion stage 2)."""
    z = int(code)
    return z, int(round((code - z) * 10)) + 1


def species_name(code: float) -> tuple[str, int, int]:
    """MOOG species code (26.1) → ('Fe 2', Z=26, ion stage 2), as SME names species."""
    from pysme.abund import elements

    z, ion = element_and_stage(code)
    return f"{elements[z - 1]} {ion}", z, ion


def vald_damping(fd: float, gamrad: float) -> tuple[float, float]:
    """(γ_rad, van der Waals) as SME reads them: VALD's placeholders and Unsöld factors → 0 (SME's own)."""
    return (gamrad if gamrad > 2e5 else 0.0), (fd if (fd < 0 or fd > 20) else 0.0)


def turbospectrum_rows(path: str | Path):
    """Yield (line number, species code, ion stage, block name, row values) for every line of a
    Turbospectrum list; row values are (λ, χ, log gf, fdamp, γ_rad), None for an unreadable row.

    Each species block starts with two quoted header lines: `'  26.000 '  1  1234` (code, stage, count)
    and `'Fe 1 '` (its name; 'CN I' for a molecule, code 607.012014).
    """
    code = ion = name = None
    with open(path) as fh:
        for k, line in enumerate(fh, 1):
            if line.startswith("'"):
                head = line.split("'")
                tag = head[1].strip() if len(head) >= 3 else ""
                if tag.replace(".", "", 1).isdigit():
                    code, name = float(tag), None
                    try:
                        ion = int(head[2].split()[0])
                    except (IndexError, ValueError):
                        ion = None
                elif code is not None:
                    name = tag
                continue
            if code is None:
                continue
            v = line.split()
            try:
                values = (float(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[5]))
            except (ValueError, IndexError):
                values = None
            yield k, code, ion, name, values


def read_vald_atomic(linelists: str | Path):
    """VALD atomic lines: DataFrame (z, ion, wave, ep, loggf, gamrad [s⁻¹, linear], gamvw [log γ6 or ABO])."""
    import pandas as pd

    linelists = Path(linelists)
    rows = []
    for f in sorted(linelists.glob("vald_*.turbospectrum")):
        for _, code, ion, _, values in turbospectrum_rows(f):
            if code < 100 and ion is not None and values is not None:
                w, ep, gf, fd, gr = values
                rows.append((int(code), ion, w, ep, gf, *vald_damping(fd, gr)))
    for f in sorted((linelists / HR10_VALD_DIR).glob("vald_*")):
        for line in open(f):
            v = line.split()
            try:
                w, code, ep, gf, fd = float(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4])
            except (ValueError, IndexError):
                continue
            if HR10_RANGE[0] < w < HR10_RANGE[1]:
                rows.append((*element_and_stage(code), w, ep, gf, *vald_damping(fd, 0.0)))
    return pd.DataFrame(rows, columns=["z", "ion", "wave", "ep", "loggf", "gamrad", "gamvw"])


def merge_vald(df, vald, gf: bool = False, windows=(), max_ion: int = 2, dwave: float = 0.02, dep: float = 0.03):
    """`df` (a linemake frame, see `pysme_engine.linelist_frame`) with VALD's data where VALD has the line.

    Damping always; with `gf` also VALD's log gf, plus VALD's lines (of species up to `max_ion`,
    lower level below MAX_EXCITATION, inside `windows` = [(lo, hi), ...]) that match no linemake line.
    """
    import pandas as pd

    df = df.copy()
    z = df["code"].astype(int).to_numpy()
    ion = df["ionization"].astype(int).to_numpy()
    w, ep = df["wave"].to_numpy(), df["ep"].to_numpy()
    gr, gv, lgf = df["gamrad"].to_numpy().copy(), df["gamvw"].to_numpy().copy(), df["loggf"].to_numpy().copy()
    used = np.zeros(len(vald), bool)
    n_gf = 0
    for (zz, ii), g in vald.groupby(["z", "ion"]):
        if zz == 1:
            continue
        g = g.sort_values("wave")
        vw, vep, pos = g["wave"].to_numpy(), g["ep"].to_numpy(), vald.index.get_indexer(g.index)
        for k in np.flatnonzero((z == zz) & (ion == ii)):
            j0, j1 = np.searchsorted(vw, [w[k] - dwave, w[k] + dwave])
            cand = [j for j in range(j0, j1) if abs(vep[j] - ep[k]) < dep]
            if not cand:
                continue
            j = min(cand, key=lambda j: abs(vw[j] - w[k]))
            row = g.iloc[j]
            gr[k], gv[k] = row["gamrad"], row["gamvw"]
            used[pos[j]] = True
            if gf:
                n_gf += int(lgf[k] != row["loggf"])
                lgf[k] = row["loggf"]
    df["gamrad"], df["gamvw"] = gr, gv
    log.info("VALD damping for %d of %d lines (van der Waals %d)", int(((gr > 0) | (gv != 0)).sum()), len(df),
             int((gv != 0).sum()))
    if not gf:
        return df
    df["loggf"] = lgf
    extra = vald[~used & (vald["z"] > 1) & (vald["ion"] <= max_ion) & (vald["ep"] < MAX_EXCITATION)]
    inside = np.zeros(len(extra), bool)
    for lo, hi in windows:
        inside |= (extra["wave"] > lo).to_numpy() & (extra["wave"] < hi).to_numpy()
    extra = extra[inside]
    add = pd.DataFrame({"wave": extra["wave"].to_numpy(), "code": extra["z"] + (extra["ion"] - 1) / 10.0,
                        "ep": extra["ep"].to_numpy(), "loggf": extra["loggf"].to_numpy()})
    add["species"] = [species_name(c)[0] for c in add["code"]]
    add["ionization"] = extra["ion"].to_numpy(float)
    add["loggf_lab"] = add["loggf"]
    add["gamrad"], add["gamvw"] = extra["gamrad"].to_numpy(), extra["gamvw"].to_numpy()
    log.info("VALD log gf on %d linemake lines; %d VALD lines linemake lacks added", n_gf, len(add))
    out = pd.concat([df, add[df.columns]], ignore_index=True)
    return out.sort_values("wave", kind="stable").reset_index(drop=True)
