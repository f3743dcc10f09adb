"""`prepare`: survey spectra + catalogue → one dataset of grid-resampled spectra (paper Sect. 2.1).

Per star and setup, exactly as Ambrosch et al. (2023) describe:

1. repair: pixels more than `sigma` (5) σ above the spectrum's median, and zero-flux
   pixels, are set to the median and flagged MASK_REPAIRED.
   σ is the robust standard deviation of the spectrum, 1.4826 × MAD of its finite,
   non-zero pixels (robust against the spikes themselves). Where the file has an error
   array, a pixel's threshold is median + sigma × max(σ, its own error), so that a noisy
   pixel (e.g. a sky-line residual with a large quoted error) is not mistaken for a
   cosmic ray; the quoted error never lowers the threshold, because at high S/N the
   continuum itself lies several errors above the median of a line-rich spectrum.
   Non-finite pixels are repaired the same way and flagged MASK_NAN; a spectrum with
   more than `max_bad` of them is rejected.
2. shift to the rest frame with the catalogue VRAD: λ_rest = λ_obs / (1 + v/c).
3. resample flux-conservingly onto the grid setup (`grid.resample`); a grid pixel takes
   the mask bits of every input pixel that overlaps it.
4. the grid already is the cut (5350–5600 Å, 8480–8930 Å by default). Grid pixels the
   spectrum does not reach are filled with 1 and flagged MASK_UNCOVERED if they are at
   most `max_uncovered` of the setup; otherwise the spectrum is rejected.
5. the setups are concatenated in grid order (8669 pixels for the paper's grid).

A star is written only if every grid setup succeeds; every failure (missing file,
unreadable file, NaNs, no coverage, no VRAD, duplicate CNAME) becomes one row of the
rejects table (FILE, CNAME, SETUP, REASON) and the run carries on.
Work is streamed in chunks of stars (optionally over a process pool), so memory is
bounded by `chunk × workers` spectra.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from .grid import Grid, Setup, resample
from .io.catalogue import PREPARE_COLUMNS, read_catalogue
from .io.dataset import MASK_NAN, MASK_REPAIRED, MASK_UNCOVERED, REJECT_COLUMNS, DatasetWriter, empty_rejects
from .io.fits_check import WARNING, is_warning, truncation_warning
from .io.spectra import SPECTRUM_SUFFIXES, Spectrum, SpectrumError, read_spectrum
from .labels import float_column

log = logging.getLogger(__name__)

C_KMS = 299792.458


@dataclass
class PrepareSettings:
    """Everything that decides the output of `prepare`; recorded in the dataset."""

    grid: Grid = field(default_factory=Grid.default)
    sigma: float = 5.0  # spike threshold above the median, in robust σ
    max_bad: float = 0.01  # largest tolerated fraction of non-finite input pixels
    # largest fraction of a grid setup that may be filled with 1: 3 %, because GIRAFFE HR21 starts
    # at 8484 Å, so the paper's 8480 Å grid edge is never observed (40 px, 0.9 %) and a blueshift
    # of v km/s costs another 8484·v/c Å; 3 % keeps stars down to about −330 km/s
    max_uncovered: float = 0.03
    normalise: bool = False  # fit and divide a continuum (unnormalised input, e.g. ESO Phase 3)
    chunk: int = 256  # stars per work unit
    workers: int = 1  # processes; 1 = in this process

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grid"] = self.grid.to_json()
        return d


class Reject(Exception):
    """One spectrum left out; `reason` names the file."""

    def __init__(self, reason: str, file: str = "", setup: str = ""):
        super().__init__(reason)
        self.reason, self.file, self.setup = reason, file, setup


# ---------------------------------------------------------------- per spectrum

def _median(x: np.ndarray) -> float:
    """np.median without its overheads (a few times faster on one spectrum); x must be finite."""
    n = x.size
    k = n // 2
    part = np.partition(x, (k - 1, k) if n % 2 == 0 else k)
    return float(part[k] if n % 2 else 0.5 * (part[k - 1] + part[k]))


def robust_sigma(x: np.ndarray, median: float | None = None) -> float:
    """1.4826 × median absolute deviation: the σ of the Gaussian core, blind to spikes and lines."""
    med = _median(x) if median is None else median
    return 1.4826 * _median(np.abs(x - med))


def repair(flux: np.ndarray, error: np.ndarray | None = None, sigma: float = 5.0):
    """Replace spikes (> median + sigma·σ), zeros and non-finite pixels by the median.

    Returns (repaired flux, repaired-pixel mask, non-finite mask); see the module docstring for σ.
    """
    flux = np.array(flux, dtype=float)
    bad = ~np.isfinite(flux)
    zero = flux == 0
    ok = ~bad & ~zero
    if not ok.any():
        raise ValueError("no finite, non-zero flux")
    values = flux[ok]
    med = _median(values)
    s = robust_sigma(values, med)
    if error is not None:
        err = np.where(np.isfinite(error), error, 0.0)
        s = np.maximum(s, err)
    with np.errstate(invalid="ignore"):
        spike = ok & (flux > med + sigma * s)
    repaired = spike | zero
    flux[repaired | bad] = med
    return flux, repaired, bad


def to_rest_frame(wave: np.ndarray, vrad_kms: float) -> np.ndarray:
    """Observed → rest-frame wavelength for a radial velocity in km/s (positive = receding)."""
    return np.asarray(wave, dtype=float) / (1.0 + vrad_kms / C_KMS)


def fit_continuum(wave, flux, degree: int = 5, low: float = 2.0, high: float = 3.0, iterations: int = 30):
    """Continuum by a Legendre polynomial fit with iterative, asymmetric sigma clipping.

    Pixels more than `low` σ below the fit (absorption lines) or `high` σ above it
    (spikes) are dropped and the fit repeated until the kept set stops changing; lines
    are one-sided, so the fit climbs to the continuum without riding on the noise's top.
    """
    wave = np.asarray(wave, float)
    flux = np.asarray(flux, float)
    keep = np.isfinite(flux) & (flux != 0)
    poly = None
    for _ in range(iterations):
        if keep.sum() <= degree + 1:
            break
        poly = np.polynomial.Legendre.fit(wave[keep], flux[keep], degree)
        resid = flux - poly(wave)
        s = robust_sigma(resid[keep])
        with np.errstate(invalid="ignore"):
            new = np.isfinite(flux) & (flux != 0) & (resid > -low * s) & (resid < high * s)
        if np.array_equal(new, keep):
            break
        keep = new
    if poly is None:
        raise ValueError("too few usable pixels to fit a continuum")
    return poly(wave)


def normalise_continuum(spec: Spectrum, **kwargs) -> Spectrum:
    """Divide flux (and error) by `fit_continuum`."""
    cont = fit_continuum(spec.wave, spec.flux, **kwargs)
    if not np.all(cont > 0):
        raise ValueError("fitted continuum is not positive everywhere")
    err = None if spec.error is None else spec.error / cont
    return Spectrum(spec.wave, spec.flux / cont, err, spec.header)


def prepare_spectrum(spec: Spectrum, vrad: float, setup: Setup, settings: PrepareSettings,
                     name: str = "spectrum") -> tuple[np.ndarray, np.ndarray]:
    """One setup of one star: repair, rest frame, resample onto `setup`. Raises Reject."""
    n = spec.flux.size
    n_bad = int((~np.isfinite(spec.flux)).sum())
    if n_bad > settings.max_bad * n:
        raise Reject(f"{name}: {n_bad} of {n} flux values are NaN/inf (limit {settings.max_bad:.0%})")
    if settings.normalise:
        try:
            spec = normalise_continuum(spec)
        except ValueError as e:
            raise Reject(f"{name}: continuum normalisation failed ({e})") from None
    try:
        flux, repaired, bad = repair(spec.flux, spec.error, settings.sigma)
    except ValueError as e:
        raise Reject(f"{name}: {e}") from None
    wave = to_rest_frame(spec.wave, vrad)
    flagged = repaired.any() or bad.any()
    stack = np.vstack([flux, repaired, bad]) if flagged else flux[None]
    out, covered = resample(wave, stack, setup.wavelength)
    covered &= ~_in_gaps(wave, setup.wavelength)
    n_unc = int((~covered).sum())
    if n_unc > settings.max_uncovered * setup.n_pixels:
        raise Reject(
            f"{name}: rest-frame coverage {wave[0]:.2f}–{wave[-1]:.2f} Å misses {n_unc} of {setup.n_pixels} "
            f"pixels of {setup.name} {setup.start:g}–{setup.stop:g} Å (limit {settings.max_uncovered:.0%})"
            + (" — the wavelengths look like nm, not Å (check CUNIT1)"
               if wave[-1] < setup.start and wave[0] * 10 < setup.stop and wave[-1] * 10 > setup.start else ""))
    mask = np.zeros(setup.n_pixels, np.uint8)
    if flagged:
        mask[covered & (out[1] > 0)] |= MASK_REPAIRED
        mask[covered & (out[2] > 0)] |= MASK_NAN
    mask[~covered] |= MASK_UNCOVERED
    result = out[0]
    result[~covered] = 1.0
    return result.astype(np.float32), mask


def _in_gaps(wave: np.ndarray, grid_wave: np.ndarray, factor: float = 3.0) -> np.ndarray:
    """Grid pixels inside a hole of the input (a step > factor × the median step) count as uncovered."""
    d = np.diff(wave)
    gaps = np.flatnonzero(d > factor * np.median(d))
    inside = np.zeros(grid_wave.size, bool)
    for g in gaps:
        inside |= (grid_wave > wave[g]) & (grid_wave < wave[g + 1])
    return inside


# ---------------------------------------------------------------- per star / chunk

def find_spectra(spectra_dir) -> dict[str, Path]:
    """Map file stem ('<CNAME>_<SETUP>') → path for every spectrum file in the directory."""
    spectra_dir = Path(spectra_dir)
    if not spectra_dir.is_dir():
        raise FileNotFoundError(f"spectra directory {spectra_dir} does not exist")
    found: dict[str, Path] = {}
    with os.scandir(spectra_dir) as it:
        for entry in it:
            low = entry.name.lower()
            for suffix in SPECTRUM_SUFFIXES:
                if low.endswith(suffix):
                    stem = entry.name[: -len(suffix)]
                    # prefer FITS over text when both exist (suffix order)
                    if stem not in found or SPECTRUM_SUFFIXES.index(suffix) < _suffix_rank(found[stem]):
                        found[stem] = Path(entry.path)
                    break
    return found


def _suffix_rank(path: Path) -> int:
    low = path.name.lower()
    return min(i for i, s in enumerate(SPECTRUM_SUFFIXES) if low.endswith(s))


def prepare_star(cname: str, vrad: float, files: dict, settings: PrepareSettings, notes: list | None = None):
    """All grid setups of one star → (flux, mask) over the whole grid, or a list of Rejects.

    Warnings about files that are used anyway (see io/fits_check.py) are appended to `notes`."""
    rejects, parts = [], []
    if not np.isfinite(vrad):
        first = next((str(p) for p in files.values() if p), "")
        return [Reject(f"{cname}: no VRAD in the catalogue, cannot shift to the rest frame", first)]
    for setup in settings.grid.setups:
        path = files.get(setup.name)
        if path is None:
            rejects.append(Reject(f"{cname}: no spectrum file {cname}_{setup.name}.* for setup {setup.name}",
                                  "", setup.name))
            continue
        try:
            spec = read_spectrum(path)
            parts.append(prepare_spectrum(spec, vrad, setup, settings, name=str(path)))
            note = truncation_warning(path, spec.error is not None, spec.header)
            if note and notes is not None:
                notes.append(Reject(note, str(path), setup.name))
        except SpectrumError as e:
            rejects.append(Reject(str(e), str(path), setup.name))
        except Reject as e:
            e.file, e.setup = str(path), setup.name
            rejects.append(e)
        except Exception as e:  # never let one odd file stop the survey
            rejects.append(Reject(f"{path}: {type(e).__name__}: {e}", str(path), setup.name))
    if rejects:
        return rejects
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _prepare_chunk(task):
    """Worker: a list of (row, cname, vrad, files) → (rows kept, flux, mask, reject tuples)."""
    items, settings = task
    p = settings.grid.n_pixels
    flux = np.empty((len(items), p), np.float32)
    mask = np.empty((len(items), p), np.uint8)
    kept, rejects = [], []
    for row, cname, vrad, files in items:
        notes = []
        res = prepare_star(cname, vrad, files, settings, notes)
        if isinstance(res, list):
            rejects += [(r.file, cname, r.setup, r.reason) for r in res]
            continue
        rejects += [(r.file, cname, r.setup, r.reason) for r in notes]
        flux[len(kept)], mask[len(kept)] = res
        kept.append(row)
    k = len(kept)
    return kept, flux[:k], mask[:k], rejects


# ---------------------------------------------------------------- the stage

def prepare(catalogue, spectra_dir, out, settings: PrepareSettings | None = None, progress: bool = True):
    """Prepare every catalogue star whose spectra are in `spectra_dir`; write the dataset `out`.

    `catalogue` is a path or an astropy Table with CNAME, SETUP, VRAD.
    Returns (output path, number of stars written, rejects Table).
    """
    from tqdm.auto import tqdm

    settings = settings or PrepareSettings()
    if isinstance(catalogue, Table):
        cat = catalogue
        missing = [c for c in PREPARE_COLUMNS if c not in cat.colnames]
        if missing:
            raise ValueError(f"catalogue table lacks column(s) {', '.join(missing)}")
    else:
        cat = read_catalogue(catalogue, required=PREPARE_COLUMNS)
    if len(cat) == 0:
        raise ValueError(f"catalogue {catalogue if not isinstance(catalogue, Table) else ''} has no rows: "
                         "nothing to prepare")
    index = find_spectra(spectra_dir)
    names = settings.grid.names

    early: list[tuple] = []  # rejects found before any file is read
    items, seen = [], {}
    cnames = np.asarray(cat["CNAME"]).astype(str)
    vrads = float_column(cat, "VRAD")
    for row, (cname, vrad) in enumerate(zip(cnames, vrads)):
        cname = cname.strip()
        files = {s: index.get(f"{cname}_{s}") for s in names}
        if not cname:
            early.append(("", "", "", f"catalogue row {row}: empty CNAME"))
        elif cname in seen:
            early.append(("", cname, "", f"{cname}: duplicate catalogue row {row} (row {seen[cname]} is prepared)"))
        else:
            seen[cname] = row
            items.append((row, cname, float(vrad), files))
    tasks = [(items[i : i + settings.chunk], settings) for i in range(0, len(items), settings.chunk)]

    rejects = list(early)
    kept_rows: list[int] = []
    bar = tqdm(total=len(items), unit="star", desc="prepare", disable=not progress)
    pool = mp.get_context("fork").Pool(settings.workers) if settings.workers > 1 else None
    try:
        results = pool.imap(_prepare_chunk, tasks) if pool else map(_prepare_chunk, tasks)
        with DatasetWriter(out, settings.grid, settings.to_dict(), chunk_rows=min(256, settings.chunk)) as w:
            for (kept, flux, mask, rej), (chunk_items, _) in zip(results, tasks):
                w.append(flux, mask)
                kept_rows += kept
                rejects += rej
                bar.update(len(chunk_items))
            rej_table = Table(rows=rejects, names=REJECT_COLUMNS, dtype=(str,) * 4) if rejects else empty_rejects()
            path = w.close(cat[kept_rows], rej_table)
    finally:
        bar.close()
        if pool:
            pool.terminate()
    _report(len(items) + len(early), len(kept_rows), rejects)
    return path, len(kept_rows), rej_table


def _report(n_rows: int, n_kept: int, rejects: list[tuple], show: int = 10) -> None:
    for r in [r for r in rejects if is_warning(r[3])][:show]:
        log.warning("%s", r[3][len(WARNING) + 2:])
    rejects = [r for r in rejects if not is_warning(r[3])]
    for file, cname, setup, reason in rejects[:show]:
        log.warning("rejected: %s", reason)
    if len(rejects) > show:
        log.warning("… and %d more rejected spectra (all listed in the output's /rejects table)",
                    len(rejects) - show)
    kinds = Counter(_kind(r[3]) for r in rejects)
    log.info("prepared %d of %d catalogue rows; rejects: %s", n_kept, n_rows,
             ", ".join(f"{k}: {v}" for k, v in kinds.most_common()) or "none")


def _kind(reason: str) -> str:
    for key in ("no spectrum file", "no VRAD", "NaN", "coverage", "duplicate", "unreadable", "empty CNAME"):
        if key in reason:
            return key
    return "other"
