"""Write a mock Gaia-ESO iDR6 GIRAFFE survey in the archive's own format (docs/contracts.md).

    DIR/spectra/gir_<CNAME>_H548.8.fit (HR10), gir_<CNAME>_H875.7.fit (HR21)
                                                       Gaia-ESO CASU products (see write_spectrum): native
                                                       grids, Doppler-shifted, noisy, with defects
    DIR/catalogue.fits                                 GES iDR column names, truth + measurement scatter
    DIR/truth.fits                                     true labels and the defects planted in each star
    DIR/seismic.fits                                   asteroseismic log g of some field giants (CNAME, LOGG, E_LOGG)
    DIR/ages_mock.fits                                 true ages + noise in UniDAM's columns (stand-in for isochrones)

Benchmark stars of surveys with ≥ 1000 stars are observed several times (repeat rows at the end,
sharing OBJECT; see `population.benchmark_epochs`), as the paper's benchmarks are.
    DIR/synth.json                                     the settings (a re-run with the same ones resumes)

Observation model: catalogue S/N is log-normal (median ≈ 35, 10–300 with a tail); each quoted
error grows like a + b/(S/N) and the catalogue value scatters by that error around the truth.
A(Al) is missing where the Al lines are too weak to measure (metal-poor or warm stars), and
≈ 4 % of stars have an FE1 that disagrees with FEH (different analysis nodes), as in GES.

Defects (recorded in truth.fits DEFECTS, with DEFECT_DETAIL saying where):
cosmic (1–6 spikes in ≈ 30 % of spectra), zeros (a run of zero-flux pixels in ≈ 3 %),
missing_setup (≈ 2 % of stars lack one setup), flagged (≈ 3 %: a TECH or PECULI code in the
catalogue) and the PATHOLOGICAL ones, ≈ 1.5 % each: emission (strong emission cores and lines),
bad_norm (continuum off by 15–40 % with a tilt and curvature), fast_rotator (vsini 100–250 km/s).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
from pathlib import Path

import numpy as np
from astropy.table import Table

from .. import __version__
from ..grid import GIRAFFE_NATIVE, GIRAFFE_RESOLUTION
from ..io.atomic import atomic_path, write_json
from ..labels import SOLAR_GAS07
from . import engine
from .population import BENCHMARK_EPOCHS, benchmark_epochs, draw_population, mock_isochrone_ages, seismic_subset

log = logging.getLogger(__name__)

SETUPS = ("HR10", "HR21")
PATHOLOGICAL = ("emission", "bad_norm", "fast_rotator")
RATES = {"emission": 0.015, "bad_norm": 0.015, "fast_rotator": 0.015, "flagged": 0.03,
         "missing_setup": 0.02, "cosmic": 0.30, "zeros": 0.03}
TECH_CODES = ("10106-11-01-00", "10302-11-03-00", "11120-11-00-00")  # GES-like technical flags
PECULI_CODES = ("20020-11-03-00", "20010-11-03-00", "25000-11-00-00")  # SB2, SB1-like, emission-like


EPOCHS_FROM_N_STARS = 1000  # surveys this large get repeat spectra of their benchmarks


def native_wavelength(setup: str) -> np.ndarray:
    """The GIRAFFE native pixel grid of a setup (air Å, 0.05 Å/pixel)."""
    lo, hi, step = GIRAFFE_NATIVE[setup]
    return lo + step * np.arange(int(round((hi - lo) / step)) + 1)


def plan_survey(n_stars: int, seed: int, benchmark_epochs: int | None = None) -> tuple[Table, Table]:
    """(truth, catalogue) for the whole survey; the spectra are rendered from the truth rows.

    `benchmark_epochs` extra spectra of every benchmark star are appended as the last rows
    (default: BENCHMARK_EPOCHS for surveys of at least EPOCHS_FROM_N_STARS stars; none for smaller
    test surveys, which keep exactly one catalogue row per star)."""
    truth = draw_population(n_stars, seed)
    rng = np.random.default_rng([seed, 2])
    n = len(truth)
    # S/N: log-normal with a tail; benchmarks are bright
    snr = np.clip(rng.lognormal(np.log(35), 0.75, n), 5, 400)
    bench = truth["POP"] == "benchmark"
    snr[bench] = rng.uniform(150, 300, bench.sum())
    truth["SNR_HR10"] = np.round(snr * rng.lognormal(0, 0.08, n), 1)
    truth["SNR_HR21"] = np.round(snr * rng.lognormal(0.05, 0.08, n), 1)
    # defects (benchmarks stay clean)
    defects = [[] for _ in range(n)]
    u = rng.random(n)
    edges = np.cumsum([RATES[k] for k in PATHOLOGICAL])
    kind = np.searchsorted(edges, u, side="right")
    missing = np.full(n, "", dtype="<U4")
    for i in np.flatnonzero(~bench):
        if kind[i] < len(PATHOLOGICAL):
            defects[i].append(PATHOLOGICAL[kind[i]])
        if rng.random() < RATES["flagged"]:
            defects[i].append("flagged")
        if rng.random() < RATES["missing_setup"]:
            defects[i].append("missing_setup")
            missing[i] = SETUPS[rng.integers(2)]
    fast = np.array(["fast_rotator" in d for d in defects])
    truth["VSINI"][fast] = np.round(rng.uniform(100, 250, fast.sum()), 1)
    truth["MISSING_SETUP"] = missing
    truth["DEFECTS"] = [",".join(d) for d in defects]  # cosmic/zeros are added when rendering
    truth["PATHOLOGICAL"] = fast | np.array([any(p in d for p in PATHOLOGICAL) for d in defects])
    truth["FE1"] = truth["FE_H"] + SOLAR_GAS07["Fe"]
    truth["MG1"] = truth["MG_FE"] + truth["FE_H"] + SOLAR_GAS07["Mg"]
    truth["AL1"] = truth["AL_FE"] + truth["FE_H"] + SOLAR_GAS07["Al"]
    cat = _catalogue(truth, rng, defects)
    epochs = benchmark_epochs
    if epochs is None:
        epochs = BENCHMARK_EPOCHS if n_stars >= EPOCHS_FROM_N_STARS else 0
    if epochs > 0 and bench.any():
        truth, cat = _add_benchmark_epochs(truth, cat, seed, epochs)
    return truth, cat


def _add_benchmark_epochs(truth: Table, cat: Table, seed: int, epochs: int) -> tuple[Table, Table]:
    """Append repeat spectra of the benchmarks (own random stream: earlier rows are unchanged).

    Each epoch has its own S/N (log-uniform 20–200), true RV and CNAME; clean spectra."""
    from astropy.table import vstack

    rep = benchmark_epochs(truth, seed, epochs)
    rng = np.random.default_rng([seed, 5, 1])
    n = len(rep)
    snr = np.exp(rng.uniform(np.log(20), np.log(200), n))
    rep["SNR_HR10"] = np.round(snr * rng.lognormal(0, 0.08, n), 1)
    rep["SNR_HR21"] = np.round(snr * rng.lognormal(0.05, 0.08, n), 1)
    rep["MISSING_SETUP"] = np.full(n, "", dtype="<U4")
    rep["DEFECTS"] = np.full(n, "", dtype=truth["DEFECTS"].dtype)
    rep["PATHOLOGICAL"] = np.zeros(n, bool)
    rep_cat = _catalogue(rep, rng, [[] for _ in range(n)])
    return vstack([truth, rep]), vstack([cat, rep_cat])


def _catalogue(truth: Table, rng, defects) -> Table:
    """Measured labels: truth + scatter with errors that grow as S/N falls (GES iDR columns)."""
    n = len(truth)
    present = [[s for s in SETUPS if s != m] for m in truth["MISSING_SETUP"]]
    # catalogue S/N: geometric mean over the setups observed
    snr = np.array([np.exp(np.mean(np.log([truth[f"SNR_{s}"][i] for s in p]))) for i, p in enumerate(present)])
    ln = lambda: rng.lognormal(0, 0.2, n)  # noqa: E731
    teff, logg, feh = (np.asarray(truth[c], float) for c in ("TEFF", "LOGG", "FE_H"))
    hard = 1 + 0.5 * np.clip((teff - 6200) / 800, 0, None)  # warm stars: fewer, weaker lines
    err = {
        "TEFF": (35 + 2500 / snr) * hard * ln(),
        "LOGG": (0.07 + 3.5 / snr) * hard * ln(),
        "FEH": (0.04 + 2.0 / snr) * hard * ln(),
        "FE1": (0.05 + 2.2 / snr) * hard * ln(),
        "MG1": (0.05 + 2.5 / snr) * hard * ln(),
        "AL1": (0.06 + 3.0 / snr) * (hard + np.clip((teff - 5800) / 800, 0, None)
                                     + np.clip(-1.0 - feh, 0, None)) * ln(),
    }
    true = {"TEFF": teff, "LOGG": logg, "FEH": feh, "FE1": np.asarray(truth["FE1"], float),
            "MG1": np.asarray(truth["MG1"], float), "AL1": np.asarray(truth["AL1"], float)}
    cat = Table()
    cat["CNAME"] = truth["CNAME"]
    cat["GES_FLD"] = truth["GES_FLD"]
    cat["OBJECT"] = [o or c for o, c in zip(truth["OBJECT"], truth["CNAME"])]
    cat["GES_TYPE"] = truth["GES_TYPE"]
    cat["SETUP"] = ["|".join(p) for p in present]
    cat["SNR"] = np.round(snr, 1).astype(np.float32)
    for col in ("TEFF", "LOGG", "FEH", "MG1", "AL1", "FE1"):
        value = true[col] + rng.normal(0, 0.9, n) * err[col]
        if col == "FE1":  # a few stars with discrepant analysis-node results
            odd = rng.random(n) < 0.04
            value[odd] += rng.normal(0, 0.35, odd.sum())
        e = err[col]
        if col == "AL1":  # undetectable Al lines: no measurement, as in the real catalogue
            gone = (e > 0.4) | ((feh < -2.0) & (teff > 5500))
            value[gone], e[gone] = np.nan, np.nan
        if col == "MG1":
            gone = rng.random(n) < 0.02
            value[gone], e[gone] = np.nan, np.nan
        digits = 0 if col == "TEFF" else 2
        cat[col] = np.round(value, digits).astype(np.float32)
        cat[f"E_{col}"] = np.round(e, digits).astype(np.float32)
    e_vrad = 0.15 + 6.0 / snr
    cat["VRAD"] = np.round(truth["VRAD"] + rng.normal(0, 1, n) * e_vrad, 2).astype(np.float32)
    cat["E_VRAD"] = np.round(e_vrad, 2).astype(np.float32)
    vs = np.asarray(truth["VSINI"], float)
    cat["VSINI"] = np.round(np.clip(vs * rng.lognormal(0, 0.1, n) + rng.normal(0, 1.0, n), 0.5, None), 1).astype(np.float32)
    tech, peculi = np.full(n, "", dtype="<U14"), np.full(n, "", dtype="<U14")
    for i in np.flatnonzero(["flagged" in d for d in defects]):
        if rng.random() < 0.5:
            tech[i] = TECH_CODES[rng.integers(len(TECH_CODES))]
        else:
            peculi[i] = PECULI_CODES[rng.integers(len(PECULI_CODES))]
    cat["TECH"], cat["PECULI"] = tech, peculi
    cat["RA"], cat["DEC"] = truth["RA"], truth["DEC"]
    e_plx = 0.02 + 0.08 * rng.random(n)
    cat["PARALLAX"] = truth["PARALLAX"] + rng.normal(0, 1, n) * e_plx
    cat["E_PARALLAX"] = e_plx
    for c in ("PMRA", "PMDEC"):
        e = 0.8 * e_plx
        cat[c] = truth[c] + rng.normal(0, 1, n) * e
        cat[f"E_{c}"] = e
    units = {"TEFF": "K", "E_TEFF": "K", "VRAD": "km/s", "E_VRAD": "km/s", "VSINI": "km/s", "RA": "deg",
             "DEC": "deg", "PARALLAX": "mas", "E_PARALLAX": "mas", "PMRA": "mas/yr", "E_PMRA": "mas/yr",
             "PMDEC": "mas/yr", "E_PMDEC": "mas/yr"}
    for c, unit in units.items():
        cat[c].unit = unit
    return cat


# ----------------------------------------------------------------------------- rendering

def _emulated(*args, **kwargs):
    from . import emulated  # torch is imported only when the emulator engine is asked for

    return emulated.synthesize(*args, **kwargs)


ENGINES = {"onelayer": engine.synthesize, "emulator": _emulated}


def render_star(job: dict) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """{setup: (flux, error, defects)} for one star. Deterministic in job['seed']."""
    rng = np.random.default_rng(job["seed"])
    out = {}
    for setup in SETUPS:
        if setup == job["missing"]:
            continue
        wave = native_wavelength(setup)
        engine_name = job.get("engine", "onelayer")
        extra = {"emulator": job.get("emulator")} if engine_name == "emulator" else {}
        flux = ENGINES[engine_name](wave, job["teff"], job["logg"], job["feh"],
                                    {"Mg": job["mg_fe"], "Al": job["al_fe"], "Si": job["alpha_fe"],
                                     "Ca": job["alpha_fe"], "Ti": job["alpha_fe"]}, vsini=job["vsini"],
                                    resolution=GIRAFFE_RESOLUTION[setup], vrad=job["vrad"], **extra)
        found: list[str] = []
        if "emission" in job["defects"]:
            flux = _add_emission(rng, wave, flux, job["vrad"])
        if "bad_norm" in job["defects"]:
            x = np.linspace(-1, 1, wave.size)
            amp = rng.uniform(0.15, 0.4) * rng.choice([-1, 1])
            flux = flux * (1 + amp * x + rng.uniform(-0.3, 0.3) * (x**2 - 1 / 3))
        snr = job[f"snr_{setup}"]
        scale = snr / np.median(np.sqrt(np.clip(flux, 0.05, None)))
        err = np.sqrt(np.clip(flux, 0.05, None)) / scale
        flux = flux + rng.normal(0, 1, wave.size) * err
        if rng.random() < RATES["cosmic"]:
            k = rng.integers(1, 7)
            for p in rng.integers(2, wave.size - 3, k):
                w = rng.integers(1, 3)
                flux[p:p + w] += rng.uniform(0.3, 1.0) + rng.exponential(1.5)
            found.append(f"cosmic@{setup}:{k}")
        if rng.random() < RATES["zeros"]:
            w = int(rng.integers(3, 40))
            p = int(rng.integers(0, wave.size - w))
            flux[p:p + w] = 0.0
            found.append(f"zeros@{setup}:{p}-{p + w - 1}")
        out[setup] = (flux.astype(np.float32), err.astype(np.float32), found)
    return out


def _add_emission(rng, wave, flux, vrad):
    """Chromospheric/nebular-like emission: Ca II triplet cores plus a few strong random lines."""
    shift = 1 + vrad / engine.C_KMS
    centres = [c * shift for c in (8498.02, 8542.09, 8662.14) if wave[0] < c * shift < wave[-1]]
    centres += list(rng.uniform(wave[0] + 5, wave[-1] - 5, rng.integers(3, 7)))
    for c in centres:
        amp, sig = rng.uniform(0.6, 2.0), rng.uniform(0.15, 0.5)
        flux = flux + amp * np.exp(-0.5 * ((wave - c) / sig) ** 2)
    return flux


def _card(key: str, value, comment: str = "") -> str:
    """One fixed-format 80-character FITS card (strings, bools, ints, finite floats); HIERARCH for long keys."""
    if isinstance(value, bool):
        v = f"{'T' if value else 'F':>20}"
    elif isinstance(value, str):
        v = "'" + value.replace("'", "''").ljust(8) + "'"
    elif isinstance(value, (int, np.integer)):
        v = f"{int(value):>20d}"
    else:
        r = repr(float(value))
        v = f"{r if ('.' in r or 'e' in r) else r + '.':>20}".upper()
    if len(key) > 8:  # ESO HIERARCH convention: 'HIERARCH ESO INS FILT NAME = value'
        card = f"HIERARCH {key} = {v.strip()}" + (f" / {comment}" if comment else "")
    else:
        card = f"{key:<8}= {v}" + (f" / {comment}" if comment else "")
    return card[:80].ljust(80)


def _header_block(cards: list[tuple]) -> bytes:
    """FITS header bytes from (key, value[, comment]) tuples, END-terminated and padded to 2880."""
    text = "".join(_card(*c) for c in cards) + "END".ljust(80)
    return text.ljust(-(-len(text) // 2880) * 2880).encode("ascii")


def _data_block(a: np.ndarray) -> bytes:
    b = np.ascontiguousarray(a, dtype=">f4").tobytes()
    return b + b"\0" * (-len(b) % 2880)


# Gaia-ESO CASU GIRAFFE product layout (as gir_19235180+0048006_H875.7.fit, CASU 'giraffe version 1.00')
EXP_MODE = {"HR10": "H548.8", "HR21": "H875.7"}
_VELCLASS = [("Nspec", "J", ">i4", ""), ("Cname", "16A", "S16", ""), ("VEL", "D", ">f8", "km/s"),
             ("EVEL", "D", ">f8", "km/s"), ("S_N", "D", ">f8", "")]


def spectrum_name(cname: str, setup: str) -> str:
    """The Gaia-ESO file name of a GIRAFFE product: gir_<CNAME>_<exposure mode>.fit."""
    return f"gir_{cname}_{EXP_MODE[setup]}.fit"


def _velclass_block(cname: str, vel: float, evel: float, snr: float) -> bytes:
    dt = np.dtype([(n, d) for n, _, d, _ in _VELCLASS])
    row = np.array([(1, cname.encode("ascii"), vel, evel, snr)], dtype=dt).tobytes()
    cards = [("XTENSION", "BINTABLE"), ("BITPIX", 8), ("NAXIS", 2), ("NAXIS1", dt.itemsize), ("NAXIS2", 1),
             ("PCOUNT", 0), ("GCOUNT", 1), ("TFIELDS", len(_VELCLASS))]
    for i, (name, form, _, unit) in enumerate(_VELCLASS, 1):
        cards += [(f"TTYPE{i}", name), (f"TFORM{i}", form)] + ([(f"TUNIT{i}", unit)] if unit else [])
    cards.append(("EXTNAME", "velclass"))
    return _header_block(cards) + row + b"\0" * (-len(row) % 2880)


def continuum_counts(n: int, snr: float) -> np.ndarray:
    """A smooth blaze-like continuum in counts (S/N² at the centre) for the mock final_spectrum."""
    x = np.linspace(-1.0, 1.0, n)
    return snr**2 * (1.0 + 0.15 * x - 0.25 * x**2)


def write_spectrum(path: Path, setup: str, flux: np.ndarray, err: np.ndarray, cname: str, obj: str,
                   snr: float, ra: float, dec: float, vel: float = float("nan"), evel: float = 0.2,
                   resolution: float | None = None) -> None:
    """One Gaia-ESO CASU-style GIRAFFE product (the layout of the real gir_<CNAME>_<H-code>.fit files).

    HDUs: primary `final_spectrum` (counts: flux × `continuum_counts`), `final_ivar`,
    `normalised_spectrum` (= flux), `normalised_ivar` (= 1/err²; final_ivar × continuum²), and the
    binary table `velclass` (Cname, VEL = the survey's radial velocity, EVEL, S_N). All images share
    the WCS CRVAL1 / CD1_1 / CRPIX1 / CTYPE1 'AWAV' / CUNIT1; the primary header has INSTRUME,
    OBJECT, RA, DEC and HIERARCH ESO INS FILT NAME (HR21) / EXP MODE (H875.7), but, like the real
    products, no CNAME or SETUP keyword. `resolution` adds SPEC_RES (for spectra sharper than the setup).
    Written as raw FITS blocks (astropy's HDUList.writeto costs ~25 ms a file, 10x the synthesis);
    the tests read the files back with astropy.io.fits.
    """
    lo, _, step = GIRAFFE_NATIVE[setup]
    n = int(flux.size)
    cont = continuum_counts(n, snr)
    err = np.asarray(err, dtype=np.float64)
    ivar = 1.0 / err**2
    wcs = [("CTYPE1", "AWAV"), ("CRPIX1", 1.0), ("CRVAL1", float(lo), "air wavelength of CRPIX1 [Angstrom]"),
           ("CD1_1", float(step)), ("CUNIT1", "Angstrom")]
    primary = [("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 1), ("NAXIS1", n), ("EXTEND", True),
               ("ORIGIN", f"starlabel {__version__} mock survey"), ("INSTRUME", "GIRAFFE"), ("OBJECT", obj),
               ("RA", round(float(ra), 6)), ("DEC", round(float(dec), 6)), *wcs,
               ("EXTNAME", "final_spectrum"), ("SNR", round(float(snr), 1), "median signal-to-noise per pixel"),
               ("CASUVERS", "starlabel mock of giraffe version 1.00"),
               ("ESO INS FILT NAME", setup), ("ESO INS EXP MODE", EXP_MODE[setup])]
    if resolution:
        primary.append(("SPEC_RES", float(resolution), "resolving power of this spectrum"))

    def ext(name):
        return [("XTENSION", "IMAGE"), ("BITPIX", -32), ("NAXIS", 1), ("NAXIS1", n), ("PCOUNT", 0),
                ("GCOUNT", 1), ("EXTNAME", name), *wcs]

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(_header_block(primary) + _data_block(flux * cont)
                    + _header_block(ext("final_ivar")) + _data_block(ivar / cont**2)
                    + _header_block(ext("normalised_spectrum")) + _data_block(flux)
                    + _header_block(ext("normalised_ivar")) + _data_block(ivar)
                    + _velclass_block(cname, float(vel), float(evel), float(snr)))


def _work(job: dict) -> tuple[int, str]:
    """Render and write one star's spectra (skips files already written); returns planted defects."""
    spectra_dir = Path(job["dir"])
    paths = {s: spectra_dir / spectrum_name(job["cname"], s) for s in SETUPS if s != job["missing"]}
    rendered = render_star(job)  # always rendered so the defect record is identical on resume
    # the survey's own velocity measurement per spectrum (velclass VEL): truth + 0.2 km/s scatter
    vel = job["vrad"] + np.random.default_rng([*job["seed"], 7]).normal(0, 0.2, len(SETUPS))
    found = []
    for k, (setup, (flux, err, f)) in enumerate(rendered.items()):
        found += f
        if not paths[setup].exists():
            write_spectrum(paths[setup], setup, flux, err, job["cname"], job["object"],
                           job[f"snr_{setup}"], job["ra"], job["dec"], vel=round(float(vel[k]), 2))
    return job["index"], ";".join(found)


def _jobs(truth: Table, seed: int, spectra_dir: Path, engine_name: str, emulator: str | None = None):
    for i, r in enumerate(truth):
        yield {"index": i, "seed": [seed, 3, i], "dir": str(spectra_dir), "engine": engine_name, "emulator": emulator,
               "cname": str(r["CNAME"]),
               "object": str(r["OBJECT"] or r["CNAME"]), "teff": float(r["TEFF"]), "logg": float(r["LOGG"]),
               "feh": float(r["FE_H"]), "mg_fe": float(r["MG_FE"]), "al_fe": float(r["AL_FE"]),
               "alpha_fe": float(r["ALPHA_FE"]),
               "vsini": float(r["VSINI"]), "vrad": float(r["VRAD"]), "missing": str(r["MISSING_SETUP"]),
               "defects": str(r["DEFECTS"]), "snr_HR10": float(r["SNR_HR10"]), "snr_HR21": float(r["SNR_HR21"]),
               "ra": float(r["RA"]), "dec": float(r["DEC"])}


def make_survey(out: str | Path, n_stars: int, seed: int = 0, workers: int = 2, progress: bool = True,
                overwrite: bool = False, engine_name: str = "emulator", emulator: str | Path | None = None) -> dict:
    """Write the mock survey into `out`; returns a summary dict.

    `engine_name`: "emulator" (`emulated`: the shipped emulator of PySME + ATLAS9 spectra, see
    docs/pysme_grid.md; the default since networks trained on it label the real Sun far better) or
    "onelayer" (`engine`, the one-layer line formation of the first mock surveys). `emulator`: another
    emulator file (e.g. one rebuilt from a larger PySME grid) instead of the shipped one.

    Re-running with the same settings resumes (existing spectra are kept, as their content is
    fixed by the seed); different settings in a non-empty directory need `overwrite=True`.
    """
    from tqdm import tqdm

    out = Path(out)
    if n_stars < 1:
        raise ValueError(f"n_stars must be >= 1, got {n_stars}")
    if engine_name not in ENGINES:
        raise ValueError(f"unknown engine {engine_name!r}; choose one of {sorted(ENGINES)}")
    settings = {"n_stars": int(n_stars), "seed": int(seed), "engine": engine_name, "starlabel_version": __version__}
    if engine_name == "emulator":
        from . import emulated

        emulator = str(Path(emulator).resolve()) if emulator else None
        prov = emulated.load(emulator).provenance
        settings["emulator"] = {**{k: prov.get(k) for k in ("built", "grid_points", "report")},
                                "file": emulator or "shipped"}
    elif emulator:
        raise ValueError("an emulator file is only used with engine_name='emulator'")
    manifest = out / "synth.json"
    if manifest.exists() and not overwrite:
        old = json.loads(manifest.read_text())
        old.setdefault("engine", "onelayer")  # surveys written before the engine choice existed
        keys = ("n_stars", "seed", "engine")
        if {k: old.get(k) for k in keys} != {k: settings[k] for k in keys}:
            raise ValueError(f"{out} already holds a mock survey made with {old}; "
                             "use another directory or overwrite=True (--overwrite)")
        built = (old.get("emulator") or {}).get("built")  # same engine; surveys before 2026-12-01 recorded no file
        if built is not None and built != settings["emulator"]["built"]:
            raise ValueError(f"{out} was rendered by the emulator built {built}, not by this one "
                             f"({settings['emulator']['built']}); use another directory or overwrite=True (--overwrite)")
    spectra_dir = out / "spectra"
    spectra_dir.mkdir(parents=True, exist_ok=True)
    engine.line_data(), engine._voigt_table()  # load once; forked workers inherit them
    write_json(manifest, settings, indent=1)
    truth, cat = plan_survey(n_stars, seed)
    if engine_name == "emulator" and (n_out := emulated.outside_box(truth, emulator)):
        log.warning("%d of %d stars lie outside the emulator's label box; their labels are clipped to it for "
                    "the synthesis (the truth table keeps the drawn labels)", n_out, len(truth))
    details = [""] * len(truth)
    jobs = _jobs(truth, seed, spectra_dir, engine_name, emulator)
    bar = tqdm(total=len(truth), desc="synth survey", unit="star", disable=not progress)
    if workers > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            for i, d in pool.imap_unordered(_work, jobs, chunksize=16):
                details[i] = d
                bar.update()
    else:
        for job in jobs:
            i, d = _work(job)
            details[i] = d
            bar.update()
    bar.close()
    truth["DEFECT_DETAIL"] = details
    truth["DEFECTS"] = [",".join(sorted(set(filter(None, d.split(",")))
                                        | {x.split("@")[0] for x in e.split(";") if x}))
                        for d, e in zip(truth["DEFECTS"], details)]
    cols = ["CNAME", "POP", "GES_FLD", "TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE", "ALPHA_FE", "FE1", "MG1", "AL1", "VRAD",
            "VSINI", "DEFECTS", "PATHOLOGICAL", "DEFECT_DETAIL", "MISSING_SETUP", "SNR_HR10", "SNR_HR21",
            "AGE", "RA", "DEC", "PARALLAX", "PMRA", "PMDEC", "V_R", "V_PHI", "V_Z"]
    truth = truth[cols]
    truth.meta.update({"SEED": seed, "NSTARS": n_stars})
    cat.meta.update({"ORIGIN": "starlabel mock GES iDR6", "SEED": seed})
    with atomic_path(out / "truth.fits") as tmp:
        truth.write(tmp, format="fits")
    with atomic_path(out / "catalogue.fits") as tmp:
        cat.write(tmp, format="fits")
    with atomic_path(out / "seismic.fits") as tmp:  # asteroseismic log g of some giants (validate seismic)
        seismic_subset(truth, seed).write(tmp, format="fits")
    with atomic_path(out / "ages_mock.fits") as tmp:  # true ages + noise in UniDAM's columns (validate ages)
        mock_isochrone_ages(truth, seed).write(tmp, format="fits")
    summary = {"stars": int(n_stars), "repeat_epochs": len(truth) - int(n_stars),  # benchmark re-observations
               "spectra": int(sum(2 - bool(m) for m in truth["MISSING_SETUP"])),
               "pathological": int(np.sum(truth["PATHOLOGICAL"])), "out": str(out)}
    log.info("mock survey: %(stars)d stars, %(spectra)d spectra, %(pathological)d pathological → %(out)s", summary)
    return summary
