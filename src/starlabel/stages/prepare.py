"""`prepare`: survey spectra + catalogue → one dataset of grid-resampled spectra (paper Sect. 2.1).

Per star and setup, as Ambrosch et al. (2023) describe, plus what real survey files need:

0. read: any supported file (`io.spectra.read_spectrum`, chosen by content); a Gaia-ESO CASU
   product gives its `normalised_spectrum` (or `final_spectrum` with `normalise=True`).
   Flux that is not continuum-normalised (the file says so, or its median is outside
   1/3–3) while `normalise` is off is normalised by the continuum fit with a warning naming
   the file (`unnormalised="normalise"`, the default) or rejected (`unnormalised="reject"`);
   never written as it is.
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
1b. resolution matching (not in the paper, whose spectra all come from GIRAFFE): a spectrum
   sharper than the setup (input R from `input_resolution`, the file's SPEC_RES, the catalogue's
   SPEC_RES / RESOLUTION column, or the nominal R of the setup the file names) is convolved to the
   setup's R with a Gaussian LSF (`starlabel.lsf`); the input R is recorded in R_IN_<SETUP>.
2. shift to the rest frame: λ_rest = λ_obs / (1 + v/c) with v the catalogue VRAD; where that is
   missing (NaN), the velocity the file carries (GES `velclass` VEL); `rest_frame=True` means the
   spectra are already at rest (no shift). VRAD_USED / VRAD_SOURCE record which.
3. resample flux-conservingly onto the grid setup (`grid.resample`); a grid pixel takes
   the mask bits of every input pixel that overlaps it.
4. the grid already is the cut (5350–5600 Å, 8480–8930 Å by default). Grid pixels the
   spectrum does not reach are filled with 1 and flagged MASK_UNCOVERED if they are at
   most `max_uncovered` of the setup; otherwise the spectrum is rejected.
5. the setups are concatenated in grid order (8669 pixels for the paper's grid).
6. the error spectrum (not in the paper; `errors=True`, the default; `--no-errors` leaves it out)
   goes through the same steps into the dataset's /error (1σ, float32, NaN where unknown; see
   `prepare_spectrum`), so that `predict --model-spectra` can weigh residuals by it.

Files are matched to catalogue rows by CNAME wherever it appears: in the file name (the GES
pattern HHMMSSss±DDMMSSs anywhere, e.g. gir_<CNAME>_H875.7.fit, or <CNAME>_<SETUP>.*), in the
header / velclass table (files whose name has none), or through a FILENAME catalogue column
('|'-separated). The setup comes from the name (HR21, H875.7), the header, or else the grid setup
the file's wavelengths overlap most.

Catalogue rows are first reduced to one per star (`io.catalogue.resolve_rows`: other-instrument
rows skipped, duplicates merged by a documented rule). A star observed in some grid setups only
is kept (`missing_setups="keep"`, the default) with the missing setups filled with 1 and flagged
MASK_MISSING_SETUP, and its catalogue column MISSING_SETUP names them; `missing_setups="reject"`
rejects it as the paper does. Every other failure (unreadable file, NaNs, no coverage, no
velocity, …) rejects the star: one row per reason in the rejects table (FILE, CNAME, SETUP,
REASON), and the run carries on. Work is streamed in chunks of stars (optionally over a
process pool), so memory is bounded by `chunk × workers` spectra.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..grid import Grid, Setup, resample, resample_variance, setup_resolution
from ..io.catalogue import read_catalogue, resolve_rows
from ..io.dataset import (MASK_MISSING_SETUP, MASK_NAN, MASK_REPAIRED, MASK_UNCOVERED, REJECT_COLUMNS,
                         DatasetWriter, empty_rejects)
from ..io.fits_check import WARNING, is_warning, truncation_warning
from ..io.spectra import (CNAME_PATTERN, SETUP_CODES, SPECTRUM_SUFFIXES, Spectrum, SpectrumError, name_setup,
                         pop_library_warnings, read_spectrum)
from ..continuum import fast_median, fit_continuum, robust_sigma
from ..labels import float_column
from ..lsf import degrade, degrade_variance
from ..scheduler import Parts, connect, fingerprint, map_chunks
from ..scheduler import parse as parse_scheduler

log = logging.getLogger(__name__)

C_KMS = 299792.458
REQUIRED_COLUMNS = ("CNAME",)
UNNORMALISED_RANGE = (1 / 3, 3.0)  # a median flux outside this is not continuum-normalised


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
    normalise: bool = False  # fit and divide a continuum (unnormalised input; GES: final_spectrum)
    unnormalised: str = "normalise"  # without `normalise`: 'normalise' (with a warning) or 'reject'
    rest_frame: bool = False  # spectra are already at rest: no Doppler shift
    missing_setups: str = "keep"  # 'keep' (masked, MISSING_SETUP) or 'reject' (the paper)
    input_resolution: float | None = None  # R of every input spectrum (overrides file and catalogue)
    match_resolution: bool = True  # degrade spectra sharper than the setup's R
    errors: bool = True  # propagate the files' error spectra into /error (doubles the dataset's size)
    resolutions: dict = field(default_factory=dict)  # setup → R_out; filled from the grid
    chunk: int = 256  # stars per work unit
    workers: int = 1  # processes; 1 = in this process

    def __post_init__(self):
        if self.unnormalised not in ("normalise", "reject"):
            raise ValueError(f"unnormalised must be 'normalise' or 'reject', got {self.unnormalised!r}")
        if self.missing_setups not in ("keep", "reject"):
            raise ValueError(f"missing_setups must be 'keep' or 'reject', got {self.missing_setups!r}")
        for name in self.grid.names:
            r = setup_resolution(name)
            if name not in self.resolutions and r:
                self.resolutions[name] = float(r)

    @property
    def product(self) -> str:
        """Which GES CASU product to read: the final (unnormalised) one when we normalise ourselves."""
        return "final" if self.normalise else "normalised"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grid"] = self.grid.to_json()
        d["lsf"] = "Gaussian, FWHM = lambda * sqrt(1/R_out^2 - 1/R_in^2) (starlabel.lsf)"
        return d


class Reject(Exception):
    """One spectrum left out; `reason` names the file."""

    def __init__(self, reason: str, file: str = "", setup: str = ""):
        super().__init__(reason)
        self.reason, self.file, self.setup = reason, file, setup


# ---------------------------------------------------------------- per spectrum

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
    med = fast_median(values)
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


def normalise_continuum(spec: Spectrum, **kwargs) -> Spectrum:
    """Divide flux (and error) by `fit_continuum`."""
    cont = fit_continuum(spec.wave, spec.flux, **kwargs)
    if not np.all(cont > 0):
        raise ValueError("fitted continuum is not positive everywhere")
    err = None if spec.error is None else spec.error / cont
    return spec._replace(flux=spec.flux / cont, error=err, normalised=True)


def is_unnormalised(spec: Spectrum) -> tuple[bool, float]:
    """(True, median) when the flux is not continuum-normalised: the file says so, or its median is far from 1."""
    finite = spec.flux[np.isfinite(spec.flux)]
    med = fast_median(finite) if finite.size else math.nan
    far = not (UNNORMALISED_RANGE[0] <= med <= UNNORMALISED_RANGE[1])
    return (spec.normalised is False) or far, med


def input_resolution(spec: Spectrum, settings: PrepareSettings, catalogue_r: float | None = None) -> float:
    """R of the input spectrum: --input-resolution, the file's SPEC_RES, the catalogue, the setup it names."""
    for r in (settings.input_resolution, spec.resolution, catalogue_r, setup_resolution(spec.setup) if spec.setup else None):
        if r is not None and np.isfinite(r) and r > 0:
            return float(r)
    return math.nan


def prepare_spectrum(spec: Spectrum, vrad: float, setup: Setup, settings: PrepareSettings,
                     name: str = "spectrum", notes: list | None = None,
                     catalogue_r: float | None = None, with_error: bool = False) -> tuple[np.ndarray, ...]:
    """One setup of one star: (normalise,) repair, (degrade,) rest frame, resample onto `setup`. Raises Reject.

    Returns (flux, mask), or (flux, mask, error) with `with_error`. The 1σ error follows the flux as a
    variance: divided by the continuum (`normalise_continuum`), convolved with the squared LSF kernel
    where the resolution is matched (`lsf.degrade_variance`), rebinned with squared overlap weights
    (`grid.resample_variance`: a 0.06-Å HR10 bin over 0.05-Å GIRAFFE pixels has 0.71–0.85 σ, median
    0.77; a 0.1-Å HR21 bin 0.61–0.71 σ, median ≈ 0.62; both depending on where the bin edges fall). An input pixel whose error is
    unknown (repaired spike or zero, non-finite flux, non-finite or non-positive error) counts with
    the spectrum's robust σ² where the LSF mixes it into its neighbours, and every grid pixel that
    overlaps it is NaN (those carry MASK_REPAIRED / MASK_NAN already); uncovered pixels are NaN, and
    so is the whole setup when the file has no error.
    What was done beyond the paper's steps is appended to `notes` (strings naming the setup).
    """
    notes = [] if notes is None else notes
    n = spec.flux.size
    n_bad = int((~np.isfinite(spec.flux)).sum())
    if n_bad > settings.max_bad * n:
        raise Reject(f"{name}: {n_bad} of {n} flux values are NaN/inf (limit {settings.max_bad:.0%})")
    normalise = settings.normalise
    if not normalise:
        unnormalised, med = is_unnormalised(spec)
        if unnormalised:
            if settings.unnormalised == "reject":
                raise Reject(f"{name}: unnormalised flux (median {med:.4g}) and no --normalise")
            notes.append(f"{setup.name}: unnormalised flux (median {med:.4g}) continuum-normalised")
            normalise = True
    if normalise:
        try:
            spec = normalise_continuum(spec)
        except ValueError as e:
            raise Reject(f"{name}: continuum normalisation failed ({e})") from None
    try:
        flux, repaired, bad = repair(spec.flux, spec.error, settings.sigma)
    except ValueError as e:
        raise Reject(f"{name}: {e}") from None
    var = unknown = None
    if with_error and spec.error is not None:
        var, unknown = input_variance(spec.error, flux, repaired | bad)
    r_out = settings.resolutions.get(setup.name)
    if settings.match_resolution and r_out:
        r_in = input_resolution(spec, settings, catalogue_r)
        if r_in > 1.02 * r_out:
            flux = degrade(spec.wave, flux, r_in, r_out)
            if var is not None:
                var = degrade_variance(spec.wave, var, r_in, r_out)
            notes.append(f"{setup.name}: degraded R {r_in:.0f} -> {r_out:.0f} (Gaussian LSF)")
    wave = to_rest_frame(spec.wave, vrad)
    flagged = repaired.any() or bad.any()
    rows = [flux] + ([repaired, bad] if flagged else []) + ([unknown] if var is not None else [])
    out, covered = resample(wave, np.vstack(rows), setup.wavelength)
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
    if not with_error:
        return result.astype(np.float32), mask
    error = np.full(setup.n_pixels, np.nan, np.float32)
    if var is not None:
        with np.errstate(invalid="ignore"):
            e = np.sqrt(resample_variance(wave, var, setup.wavelength))
        e[~covered | ~(out[-1] == 0)] = np.nan
        error[:] = e
    return result.astype(np.float32), mask, error


def input_variance(error: np.ndarray, flux: np.ndarray, repaired: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(variance, unknown) of an input spectrum for `prepare_spectrum`: error² where the error is
    finite and positive and the pixel was not repaired; elsewhere `unknown` is set and the variance is
    the robust σ² of the (repaired) flux, a generous stand-in, so that pixels the LSF mixes with it
    stay finite but are not trusted more than the spectrum's own scatter allows."""
    error = np.asarray(error, dtype=float)
    with np.errstate(invalid="ignore"):
        unknown = np.asarray(repaired, bool) | ~np.isfinite(error) | ~(error > 0)
    fill = robust_sigma(flux) ** 2 if unknown.any() else 0.0
    fill = fill if np.isfinite(fill) and fill > 0 else 1.0
    return np.where(unknown, fill, np.where(unknown, 0.0, error) ** 2), unknown.astype(float)


def _in_gaps(wave: np.ndarray, grid_wave: np.ndarray, factor: float = 3.0) -> np.ndarray:
    """Grid pixels inside a hole of the input (a step > factor × the median step) count as uncovered."""
    d = np.diff(wave)
    gaps = np.flatnonzero(d > factor * np.median(d))
    inside = np.zeros(grid_wave.size, bool)
    for g in gaps:
        inside |= (grid_wave > wave[g]) & (grid_wave < wave[g + 1])
    return inside


# ---------------------------------------------------------------- finding the files

class SpectrumIndex:
    """Every spectrum file of a directory, keyed by (CNAME, setup) as far as its name tells.

    A name holding a GES CNAME anywhere (gir_<CNAME>_H875.7.fit, <CNAME>_HR21.fits) gives the CNAME;
    otherwise <NAME>_<SETUP>.* with SETUP a grid setup gives NAME. The setup comes from an H-code or
    a GIRAFFE setup in the name, or the last '_' token if it is a grid setup; files without one are
    kept per CNAME and assigned to a setup after reading (header, else wavelength overlap); files
    named for a setup that is not on the grid are skipped (counted in `other_setup`). Files
    whose name gives no CNAME at all are read once here to find the CNAME in their header.
    FITS is preferred over text when both exist for one key.
    """

    def __init__(self, spectra_dir, setup_names=()):
        spectra_dir = Path(spectra_dir)
        if not spectra_dir.is_dir():
            raise FileNotFoundError(f"spectra directory {spectra_dir} does not exist")
        self.setup_names = set(setup_names)
        self.by_key: dict[tuple[str, str], Path] = {}
        self.unknown_setup: dict[str, list[Path]] = {}
        self.by_name: dict[str, Path] = {}
        self.unreadable: list[str] = []
        self.other_setup = 0  # files whose name names a setup that is not on the grid (not read)
        anonymous = []
        with os.scandir(spectra_dir) as it:
            entries = sorted((e.name, e.path) for e in it if e.is_file())
        for name, path in entries:
            low = name.lower()
            suffix = next((s for s in SPECTRUM_SUFFIXES if low.endswith(s)), None)
            if suffix is None:
                continue
            path = Path(path)
            self.by_name[name] = path
            stem = name[: -len(suffix)]
            cname, setup = self._classify(stem)
            if setup == "other":
                self.other_setup += 1
            elif cname:
                self._add(cname, setup, path)
            else:
                anonymous.append(path)
        for path in anonymous:
            try:
                spec = read_spectrum(path)
            except SpectrumError as e:
                self.unreadable.append(str(e))
                continue
            if spec.cname:
                setup = spec.setup if spec.setup in self.setup_names else ""
                self._add(spec.cname, setup, path)

    def _classify(self, stem: str) -> tuple[str, str]:
        m = CNAME_PATTERN.search(stem)
        head, _, tail = stem.rpartition("_")
        if tail in self.setup_names or tail.upper() in self.setup_names:
            setup = tail if tail in self.setup_names else tail.upper()
            return (m.group(1) if m else head), setup
        setup = name_setup(stem)
        if m and setup and setup not in self.setup_names:
            return "", "other"  # named for a setup the grid does not have (e.g. an HR15N file for HR10,HR21)
        if m:
            return m.group(1), setup
        return "", ""

    def _add(self, cname: str, setup: str, path: Path) -> None:
        if setup:
            old = self.by_key.get((cname, setup))
            if old is None or _suffix_rank(path) < _suffix_rank(old):
                self.by_key[(cname, setup)] = path
        else:
            self.unknown_setup.setdefault(cname, []).append(path)

    def files_for(self, cname: str, filenames: str = "") -> dict:
        """{setup: path} for the grid setups found, and '' → [paths of unknown setup] (incl. FILENAME ones)."""
        files = {s: p for s in self.setup_names if (p := self.by_key.get((cname, s))) is not None}
        other = list(self.unknown_setup.get(cname, []))
        for fn in filter(None, (f.strip() for f in str(filenames).split("|"))):
            p = self.by_name.get(Path(fn).name)
            if p is not None and p not in other and p not in files.values():
                other.append(p)
        if other:
            files[""] = other
        return files


def find_spectra(spectra_dir, setup_names=("HR10", "HR21")) -> SpectrumIndex:
    """Index the spectrum files of a directory (see `SpectrumIndex`)."""
    return SpectrumIndex(spectra_dir, setup_names)


def _suffix_rank(path: Path) -> int:
    low = path.name.lower()
    return min(i for i, s in enumerate(SPECTRUM_SUFFIXES) if low.endswith(s))


def _overlap_setup(spec: Spectrum, grid: Grid, taken) -> str:
    """The free grid setup whose range the spectrum covers most (at least half of it), or ''."""
    best, frac = "", 0.5
    for s in grid.setups:
        if s.name in taken:
            continue
        f = (min(spec.wave[-1], s.stop) - max(spec.wave[0], s.start)) / (s.stop - s.start)
        if f > frac:
            best, frac = s.name, f
    return best


# ---------------------------------------------------------------- per star / chunk

def _read(path, settings):
    return read_spectrum(path, product=settings.product)


def prepare_star(cname: str, vrad: float, files: dict, settings: PrepareSettings, catalogue_r: float | None = None,
                 warnings: list | None = None):
    """All grid setups of one star → (flux, mask, info, error) over the whole grid, or a list of Rejects
    (error: None without `settings.errors`, else NaN where unknown, e.g. in a missing setup).
    Warnings about files that are used anyway (io/fits_check.py) are appended to `warnings` as Rejects.

    `files`: {setup: path} plus '' → [paths whose setup is found by reading them].
    `info`: MISSING_SETUP, VRAD_USED, VRAD_SOURCE, PREP_NOTES and R_IN_<setup> for the catalogue.
    """
    grid = settings.grid
    rejects, notes, missing = [], [], []
    specs: dict[str, tuple[Path, Spectrum]] = {}
    for path in files.get("", []):
        try:
            spec = _read(path, settings)
        except SpectrumError as e:
            rejects.append(Reject(str(e), str(path), ""))
            continue
        taken = set(specs) | {k for k in files if k}
        setup = spec.setup if spec.setup in grid.names and spec.setup not in taken else _overlap_setup(spec, grid, taken)
        if setup:
            specs[setup] = (path, spec)
        else:
            notes.append(f"{Path(path).name}: covers no free grid setup, not used")
    parts, vels, sources, r_in = [], [], [], {}
    for setup in grid.setups:
        path = files.get(setup.name)
        if setup.name not in specs and path is None:
            missing.append(setup.name)
            parts.append((np.ones(setup.n_pixels, np.float32), np.full(setup.n_pixels, MASK_MISSING_SETUP, np.uint8),
                          np.full(setup.n_pixels, np.nan, np.float32)))
            continue
        try:
            if setup.name in specs:
                path, spec = specs[setup.name]
            else:
                spec = _read(path, settings)
            if settings.rest_frame:
                v, source = 0.0, "rest-frame"
            elif np.isfinite(vrad):
                v, source = float(vrad), "catalogue"
            elif np.isfinite(spec.vrad):
                v, source = float(spec.vrad), "velclass"
            else:
                raise Reject(f"{cname}: no VRAD in the catalogue and no velocity (velclass VEL) in {path}; "
                             "cannot shift to the rest frame (use --rest-frame for spectra already at rest)")
            res = prepare_spectrum(spec, v, setup, settings, name=str(path), notes=notes,
                                   catalogue_r=catalogue_r, with_error=settings.errors)
            parts.append(res if settings.errors else (*res, None))
            if spec.error is None and settings.errors:
                notes.append(f"{setup.name}: no error spectrum in the file (/error NaN)")
            warning = truncation_warning(path, spec.error is not None, spec.header)
            if warning and warnings is not None:
                warnings.append(Reject(warning, str(path), setup.name))
            vels.append(v)
            sources.append(source)
            r_in[f"R_IN_{setup.name}"] = input_resolution(spec, settings, catalogue_r)
        except SpectrumError as e:
            rejects.append(Reject(str(e), str(path), setup.name))
        except Reject as e:
            e.file, e.setup = str(path), setup.name
            rejects.append(e)
        except Exception as e:  # never let one odd file stop the survey
            rejects.append(Reject(f"{path}: {type(e).__name__}: {e}", str(path), setup.name))
    if missing and (settings.missing_setups == "reject" or len(missing) == len(grid.setups)):
        for name in missing:
            rejects.append(Reject(f"{cname}: no spectrum file {cname}_{name}.* ({_code_hint(name)}or any file "
                                  f"naming {cname} that covers {name}) for setup {name}", "", name))
    if rejects:
        return rejects
    info = {"MISSING_SETUP": "|".join(missing), "VRAD_USED": float(np.mean(vels)),
            "VRAD_SOURCE": "|".join(sorted(set(sources))), "PREP_NOTES": "; ".join(notes), **r_in}
    error = np.concatenate([p[2] for p in parts]) if settings.errors else None
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), info, error


def _code_hint(setup: str) -> str:
    code = SETUP_CODES.get(setup)
    return f"*{code}.fit*, " if code else ""


def _prepare_chunk(task):
    """Worker: a list of (row, cname, vrad, files, R) → (rows kept, flux, mask, infos, reject tuples, warnings,
    error (None without `settings.errors`))."""
    items, settings = task
    p = settings.grid.n_pixels
    flux = np.empty((len(items), p), np.float32)
    mask = np.empty((len(items), p), np.uint8)
    error = np.empty((len(items), p), np.float32) if settings.errors else None
    kept, infos, rejects = [], [], []
    for row, cname, vrad, files, r_cat in items:
        warned = []
        res = prepare_star(cname, vrad, files, settings, r_cat, warned)
        if isinstance(res, list):
            rejects += [(r.file, cname, r.setup, r.reason) for r in res]
            continue
        rejects += [(r.file, cname, r.setup, r.reason) for r in warned]
        flux[len(kept)], mask[len(kept)], info, e = res
        if error is not None:
            error[len(kept)] = e
        kept.append(row)
        infos.append(info)
    k = len(kept)
    return kept, flux[:k], mask[:k], infos, rejects, pop_library_warnings(), None if error is None else error[:k]


def _prepare_part(items, settings) -> dict:
    """One Dask task: `_prepare_chunk` as a dict of arrays and JSON values (a `scheduler.Parts` entry)."""
    kept, flux, mask, infos, rejects, warned, error = _prepare_chunk((items, settings))
    return {"kept": np.asarray(kept, dtype=np.int64), "flux": flux, "mask": mask, "infos": infos,
            "rejects": [list(r) for r in rejects], "warnings": dict(warned),
            **({} if error is None else {"error": error})}


def _from_part(r: dict) -> tuple:
    """Back to `_prepare_chunk`'s tuple, whether the part came from a worker or from disk."""
    return ([int(k) for k in r["kept"]], r["flux"], r["mask"], list(r["infos"]),
            [tuple(x) for x in r["rejects"]], Counter(r["warnings"]), r.get("error"))


# ---------------------------------------------------------------- the stage

def prepare(catalogue, spectra_dir, out, settings: PrepareSettings | None = None, progress: bool = True,
            scheduler=None):
    """Prepare every catalogue star whose spectra are in `spectra_dir`; write the dataset `out`.

    `catalogue` is a path or an astropy Table with CNAME (SETUP, VRAD, FILENAME, SPEC_RES used
    when present). Returns (output path, number of stars written, rejects Table).
    `scheduler` (`starlabel.scheduler.connect`: 'local[:N]', an address, a scheduler file or a
    Client): the chunks of stars are read and cleaned on a Dask cluster instead of
    `settings.workers` local processes, and written here in order, so the dataset is the same;
    finished chunks wait in `OUT.parts/` until it is written, and a rerun redoes only the others
    (it assumes the spectrum files did not change in between).
    """
    from tqdm.auto import tqdm

    settings = settings or PrepareSettings()
    if parse_scheduler(scheduler)[0] != "none" and settings.workers > 1:  # (a bad --scheduler fails here)
        log.info("--scheduler given: the chunks go to the Dask cluster, --workers %d is not used", settings.workers)
    if isinstance(catalogue, Table):
        cat = catalogue
        missing = [c for c in REQUIRED_COLUMNS if c not in cat.colnames]
        if missing:
            raise ValueError(f"catalogue table lacks column(s) {', '.join(missing)}")
    else:
        cat = read_catalogue(catalogue, required=REQUIRED_COLUMNS)
    if len(cat) == 0:
        raise ValueError(f"catalogue {catalogue if not isinstance(catalogue, Table) else ''} has no rows: "
                         "nothing to prepare")
    index = find_spectra(spectra_dir, settings.grid.names)
    for msg in index.unreadable[:5]:
        log.warning("spectra directory: %s", msg)
    if index.other_setup:
        log.info("spectra directory: %d files named for setups not on the grid %s were not read",
                 index.other_setup, ",".join(settings.grid.names))

    rows, early = resolve_rows(cat, settings.grid)  # early: rejects found before any file is read
    cnames = np.char.strip(np.asarray(cat["CNAME"]).astype(str)) if len(cat) else np.array([], str)
    vrads = float_column(cat, "VRAD") if "VRAD" in cat.colnames else np.full(len(cat), np.nan)
    fnames = np.asarray(cat["FILENAME"]).astype(str) if "FILENAME" in cat.colnames else np.full(len(cat), "")
    rcol = next((c for c in ("SPEC_RES", "RESOLUTION") if c in cat.colnames), None)
    r_cat = float_column(cat, rcol) if rcol else np.full(len(cat), np.nan)
    items = [(row, cnames[row], float(vrads[row]), index.files_for(cnames[row], fnames[row]),
              float(r_cat[row]) if np.isfinite(r_cat[row]) else None) for row in rows]
    tasks = [(items[i : i + settings.chunk], settings) for i in range(0, len(items), settings.chunk)]

    rejects = list(early)
    kept_rows: list[int] = []
    infos: list[dict] = []
    warned: Counter = Counter()
    bar = tqdm(total=len(items), unit="star", desc="prepare", disable=not progress)
    pool = None
    stack = contextlib.ExitStack()  # the Dask client, when there is one
    try:
        client = stack.enter_context(connect(scheduler))
        if client is not None:
            key = fingerprint({"tasks": [[it[:3] + (sorted((k, str(v)) for k, v in it[3].items()), it[4])
                                          for it in t[0]] for t in tasks], "settings": settings.to_dict()})
            parts = Parts(Path(out).with_name(Path(out).name + ".parts"), key)
            results = (_from_part(r) for r in map_chunks(client, _prepare_part, tasks, parts=parts))
        else:
            parts = None
            pool = mp.get_context("fork").Pool(settings.workers) if settings.workers > 1 else None
            results = pool.imap(_prepare_chunk, tasks) if pool else map(_prepare_chunk, tasks)
        with DatasetWriter(out, settings.grid, settings.to_dict(), chunk_rows=min(256, settings.chunk),
                           errors=settings.errors) as w:
            for (kept, flux, mask, info, rej, warn, error), (chunk_items, _) in zip(results, tasks):
                w.append(flux, mask, error)
                kept_rows += kept
                infos += info
                rejects += rej
                warned.update(warn)
                bar.update(len(chunk_items))
            rej_table = Table(rows=rejects, names=REJECT_COLUMNS, dtype=(str,) * 4) if rejects else empty_rejects()
            path = w.close(_with_info(cat[kept_rows], infos, settings.grid), rej_table)
        if parts is not None:  # the dataset is written: the finished chunks are no longer needed
            parts.remove()
    finally:
        bar.close()
        if pool:
            pool.terminate()
        stack.close()
    warned.update(pop_library_warnings())
    _report(len(cat), len(kept_rows), rejects, infos, warned)
    return path, len(kept_rows), rej_table


def _with_info(cat: Table, infos: list[dict], grid: Grid) -> Table:
    """The kept catalogue rows plus what prepare did per star (replacing columns of the same name)."""
    cat = Table(cat, copy=True)
    cols = ["MISSING_SETUP", "VRAD_USED", "VRAD_SOURCE", "PREP_NOTES"] + [f"R_IN_{n}" for n in grid.names]
    for c in cols:
        values = [i.get(c, np.nan if c.startswith(("R_IN_", "VRAD_USED")) else "") for i in infos]
        if c.startswith(("R_IN_", "VRAD_USED")):
            cat[c] = np.asarray(values, dtype=float)
        else:
            cat[c] = np.asarray(values, dtype=str) if values else np.zeros(0, dtype="<U1")
    return cat


def _report(n_rows: int, n_kept: int, rejects: list[tuple], infos: list[dict], warned: Counter,
            show: int = 10) -> None:
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
    normalised = [i for i in infos if "unnormalised" in i["PREP_NOTES"]]
    for i in normalised[:show]:
        log.warning("%s", i["PREP_NOTES"])
    counts = Counter()
    for i in infos:
        counts["missing setup"] += bool(i["MISSING_SETUP"])
        counts["velocity from velclass"] += "velclass" in i["VRAD_SOURCE"]
        counts["auto-normalised"] += "unnormalised" in i["PREP_NOTES"]
        counts["resolution degraded"] += "degraded" in i["PREP_NOTES"]
        counts["no error spectrum (/error NaN)"] += "no error spectrum" in i["PREP_NOTES"]
    if +counts:
        log.info("kept stars: %s", ", ".join(f"{k}: {v}" for k, v in (+counts).items()))
    for msg, n in warned.most_common():
        log.info("library warnings while reading spectra (not shown each time): %d × %s", n, msg)


def _kind(reason: str) -> str:
    for key in ("no spectrum file", "no VRAD", "NaN", "coverage", "duplicate", "other instrument", "unreadable",
                "unnormalised", "empty CNAME"):
        if key in reason:
            return key
    return "other"
