"""Spectrum readers: Gaia-ESO CASU products, 1-D WCS images, ESO Phase 3 tables, plain text.

Every reader returns a `Spectrum`: air wavelengths in Å (increasing), flux and 1σ error
(None when the file has none) as float64 arrays, the header as a plain dict, and what the
file says about itself: the survey's radial velocity (`vrad`, GES `velclass` VEL), the
setup (`setup`, from INS FILT NAME / EXP MODE), the CNAME, the resolving power
(`resolution`, ESO SPEC_RES) and whether the flux is continuum-normalised (`normalised`).

The reader is chosen by content, not by name:
- a Gaia-ESO CASU product (extensions `final_spectrum`, `final_ivar`, `normalised_spectrum`,
  `normalised_ivar`, `velclass`, …; e.g. gir_19235180+0048006_H875.7.fit): the normalised
  spectrum and its inverse variance by default (`product="normalised"`), the final
  (flux-calibrated, unnormalised) spectrum and `final_ivar` with `product="final"`.
  error = 1/√ivar; pixels with ivar ≤ 0 are unusable: at the ends they are cut off, inside
  the spectrum their flux becomes NaN (so `prepare` repairs and masks them);
- a 1-D image with a linear / log-linear WCS (primary or first image extension), with an
  optional ERROR / IVAR / VARIANCE extension;
- an ESO Phase 3 (ADP) spectrum: a binary table with WAVE, FLUX[, ERR] array columns;
- text: two or three columns.

Library warnings (astropy's VerifyWarning for the TNULLn = 'NAN.0' cards of GES binary tables,
about 40 per file) are not printed: they are counted in `library_warnings` and the batch
stage reports the counts once per run (`pop_library_warnings`).

Any problem raises `SpectrumError` naming the file, so batch stages can list it in
their rejects table and carry on.
"""

from __future__ import annotations

import functools
import io
import math
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
TEXT_SUFFIXES = (".txt", ".dat", ".csv", ".asc", ".tsv")
SPECTRUM_SUFFIXES = FITS_SUFFIXES + TEXT_SUFFIXES

# extension names that carry the flux uncertainty, and how to turn them into a 1σ error
_ERROR_EXTENSIONS = {"ERROR": "sigma", "ERR": "sigma", "SIGMA": "sigma", "IVAR": "ivar",
                     "INVVAR": "ivar", "VARIANCE": "var", "VAR": "var"}

# Gaia-ESO CNAME: HHMMSSss±DDMMSSs (RA to 0.01 s, Dec to 0.1")
CNAME_PATTERN = re.compile(r"(?<!\d)(\d{8}[+-]\d{7})(?!\d)")

# GIRAFFE exposure modes (HIERARCH ESO INS EXP MODE, the H-code in GES file names) → setup:
# the grating's central wavelength in nm (ESO GIRAFFE setup table). UVES 580 nm is '580.0'.
EXP_MODES = {"H548.8": "HR10", "H665.0": "HR15N", "H875.7": "HR21", "H525.8": "HR9B", "H679.7": "HR15",
             "580.0": "U580", "U580": "U580"}
SETUP_CODES = {v: k for k, v in EXP_MODES.items() if k.startswith("H")}

library_warnings: Counter = Counter()  # "Category: message pattern" → count, since the last pop


def pop_library_warnings() -> Counter:
    """The library warnings counted since the last call (and reset the count)."""
    out = Counter(library_warnings)
    library_warnings.clear()
    return out


def _count_warnings(caught) -> None:
    for w in caught:
        msg = re.sub(r"\d+", "#", str(w.message)).split(".")[0][:120]
        library_warnings[f"{w.category.__name__}: {msg}"] += 1


class SpectrumError(ValueError):
    """A spectrum file that cannot be read or makes no sense; the message names the file."""


class Spectrum(NamedTuple):
    wave: np.ndarray  # air wavelength [Å], increasing
    flux: np.ndarray
    error: np.ndarray | None  # 1σ flux error, or None
    header: dict
    vrad: float = math.nan  # the survey's own radial velocity [km/s] (GES velclass VEL), NaN if none
    setup: str = ""  # setup named by the file (INS FILT NAME, EXP MODE, SETUP), '' if none
    cname: str = ""  # CNAME named by the file (header, velclass/Fibinfo table, OBJECT), '' if none
    resolution: float = math.nan  # resolving power stated by the file (SPEC_RES), NaN if none
    normalised: bool | None = None  # True: continuum-normalised product; False: not; None: unknown


def vac_to_air(wave_vac: np.ndarray) -> np.ndarray:
    """Vacuum → air wavelength [Å] with the IAU standard (Morton 2000, Ciddor-based) formula."""
    w = np.asarray(wave_vac, dtype=float)
    s2 = (1e4 / w) ** 2
    n = 1.0 + 0.0000834254 + 0.02406147 / (130.0 - s2) + 0.00015998 / (38.9 - s2)
    return w / n


def air_to_vac(wave_air: np.ndarray) -> np.ndarray:
    """Air → vacuum [Å] (Piskunov's inversion of the Morton formula, as used by VALD)."""
    w = np.asarray(wave_air, dtype=float)
    s2 = (1e4 / w) ** 2
    n = 1.0 + 0.00008336624212083 + 0.02408926869968 / (130.1065924522 - s2) \
        + 0.0001599740894897 / (38.92568793293 - s2)
    return w * n


@functools.lru_cache(maxsize=64)
def _to_angstrom(unit: str) -> float:
    """Factor from a wavelength unit string ('nm', 'Angstrom', 'um', 'm', '') to Å."""
    key = unit.strip().lower().replace(" ", "")
    simple = {"": 1.0, "angstrom": 1.0, "angstroms": 1.0, "aa": 1.0, "a": 1.0, "0.1nm": 1.0,
              "nm": 10.0, "nanometer": 10.0, "um": 1e4, "micron": 1e4, "m": 1e10}
    if key in simple:
        return simple[key]
    import astropy.units as u

    return float(u.Unit(unit).to(u.AA))


def _finish(path, wave, flux, error, header, vacuum: bool, **meta) -> Spectrum:
    """Common checks: 1-D, same length, increasing wavelengths; optional vacuum → air."""
    wave = np.asarray(wave, dtype=float).ravel()
    flux = np.asarray(flux, dtype=float).ravel()
    if error is not None:
        error = np.asarray(error, dtype=float).ravel()
        if error.shape != flux.shape:
            raise SpectrumError(f"{path}: error has {error.size} pixels but flux has {flux.size}")
    if wave.shape != flux.shape:
        raise SpectrumError(f"{path}: {wave.size} wavelengths but {flux.size} flux values")
    if flux.size < 2:
        raise SpectrumError(f"{path}: spectrum has {flux.size} pixels")
    if not np.all(np.isfinite(wave)):
        raise SpectrumError(f"{path}: non-finite wavelengths")
    d = np.diff(wave)
    if np.all(d < 0):
        wave, flux = wave[::-1], flux[::-1]
        error = None if error is None else error[::-1]
    elif np.all(d >= 0) and np.any(d > 0):  # repeated wavelengths (e.g. merged orders): keep the first
        keep = np.concatenate([[True], d > 0])
        wave, flux = wave[keep], flux[keep]
        error = None if error is None else error[keep]
    elif not np.all(d > 0):
        raise SpectrumError(f"{path}: wavelengths are not monotonic")
    if vacuum:
        wave = vac_to_air(wave)
    return Spectrum(wave, flux, error, header, **meta)


def _is_vacuum(header: dict, default: bool = False) -> bool:
    """Only an explicit header statement makes a spectrum vacuum (GES and ESO use air)."""
    for key in ("AIRORVAC", "WAVEREF", "SPECSYS_W"):
        v = str(header.get(key, "")).strip().lower()
        if v.startswith("vac"):
            return True
        if v.startswith("air"):
            return False
    if header.get("VACUUM") is True:
        return True
    return default


def _wcs_wavelength(path, header, n: int) -> np.ndarray:
    """Wavelengths from the linear (or log-linear) 1-D WCS: CRVAL1, CDELT1 (or CD1_1), CRPIX1."""
    try:
        crval = float(header["CRVAL1"])
        cdelt = float(header.get("CDELT1", header.get("CD1_1")))
    except (KeyError, TypeError, ValueError):
        raise SpectrumError(f"{path}: no wavelength WCS (need CRVAL1 and CDELT1 or CD1_1)") from None
    crpix = float(header.get("CRPIX1", 1.0))
    p = np.arange(1, n + 1, dtype=float) - crpix
    ctype = str(header.get("CTYPE1", "")).upper()
    if ctype.endswith("-LOG"):  # FITS WCS Paper III logarithmic axis
        wave = crval * np.exp(cdelt * p / crval)
    elif int(header.get("DC-FLAG", 0) or 0) == 1:  # IRAF convention: log10(λ) is linear
        wave = 10.0 ** (crval + cdelt * p)
    else:
        wave = crval + cdelt * p
    try:
        return wave * _to_angstrom(str(header.get("CUNIT1", "") or ""))
    except ValueError:
        raise SpectrumError(f"{path}: unknown wavelength unit CUNIT1={header.get('CUNIT1')!r}") from None


def _error_from(kind: str, data: np.ndarray) -> np.ndarray:
    data = np.asarray(data, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ivar":
            return np.where(data > 0, 1.0 / np.sqrt(data), np.inf)
        if kind == "var":
            return np.sqrt(data)
    return data


# ---------------------------------------------------------------- what the file says about itself

_GIRAFFE_FILTER = re.compile(r"^(HR|LR)\d+[A-Z]?$")


def header_setup(header: dict) -> str:
    """The setup a header names: GIRAFFE INS FILT NAME (HR21), EXP MODE (H875.7 → HR21), or SETUP."""
    filt = str(header.get("ESO INS FILT NAME", "")).strip().upper()
    if _GIRAFFE_FILTER.match(filt):
        return filt
    mode = str(header.get("ESO INS EXP MODE", "")).strip().upper()
    if mode in EXP_MODES:
        return EXP_MODES[mode]
    setup = str(header.get("SETUP", "")).strip().upper()
    return setup if setup and "|" not in setup else ""


def name_setup(name: str) -> str:
    """The setup named in a file name: an H-code (H875.7 → HR21) or a GIRAFFE setup (HR21)."""
    for token in re.split(r"[_\s]+", re.sub(r"\.(fits?|fts|txt|dat|csv|asc|tsv)(\.gz)?$", "", name, flags=re.I)):
        up = token.upper()
        if up in EXP_MODES:
            return EXP_MODES[up]
        if _GIRAFFE_FILTER.match(up):
            return up
    return ""


def _col(table, name: str):
    """A column of a structured array / FITS_rec by case-insensitive name, or None."""
    names = table.dtype.names or ()
    for n in names:
        if n.upper() == name:
            return table[n]
    return None


def _first(table, name: str):
    c = _col(table, name) if table is not None and len(table) else None
    if c is None:
        return None
    v = c[0]
    if isinstance(v, bytes):
        v = v.decode("ascii", "replace")
    return v.strip() if isinstance(v, str) else v


def _find_cname(header: dict, tables: list, path: Path) -> str:
    c = str(header.get("CNAME", "")).strip()
    if c:
        return c
    for t in tables:
        v = _first(t, "CNAME")
        if isinstance(v, str) and v:
            return v
    for text in (str(header.get("OBJECT", "")), path.name):
        m = CNAME_PATTERN.search(text)
        if m:
            return m.group(1)
    return ""


def _resolution(header: dict) -> float:
    try:
        r = float(header.get("SPEC_RES", math.nan))
    except (TypeError, ValueError):
        return math.nan
    return r if r > 0 else math.nan


# ---------------------------------------------------------------- fast FITS parsing

_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_TFORM = {"L": "i1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def _card_value(text: str):
    """Value of one header card (the part after '= '): str, bool, int or float."""
    text = text.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        while end != -1 and text[end + 1 : end + 2] == "'":  # '' escapes a quote
            end = text.find("'", end + 2)
        return text[1:end].replace("''", "'").rstrip()
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        return float(text.replace("D", "E"))


def _bintable_dtype(header: dict):
    """numpy dtype of a binary table row from TFORMn (scalars, fixed arrays, strings), or None."""
    fields = []
    for i in range(1, int(header.get("TFIELDS", 0)) + 1):
        m = re.fullmatch(r"\s*(\d*)([A-Z])\s*", str(header.get(f"TFORM{i}", "")))
        if not m or (m.group(2) not in _TFORM and m.group(2) != "A"):
            return None
        r = int(m.group(1) or 1)
        name = str(header.get(f"TTYPE{i}", f"col{i}")).strip() or f"col{i}"
        if m.group(2) == "A":
            fields.append((name, f"S{r}"))
        else:
            fields.append((name, _TFORM[m.group(2)], (r,)) if r != 1 else (name, _TFORM[m.group(2)]))
    try:
        dt = np.dtype(fields)
    except (TypeError, ValueError):  # e.g. duplicate column names
        return None
    return dt if dt.itemsize == int(header.get("NAXIS1", -1)) else None


def _fast_hdus(raw: bytes):
    """Minimal FITS parser: [(header dict, image array or table record array or None)], or None.

    Parsing a few keywords by hand is ~20× faster than astropy.io.fits for the small
    per-star files of a survey. Images and simple binary tables are decoded; HIERARCH cards
    keep their key without the 'HIERARCH ' prefix (as astropy does). Any file this does not
    understand (scaled images, compression, odd cards, random groups) goes to astropy instead.
    """
    out, pos = [], 0
    while pos < len(raw):
        header, end = {}, None
        stop = raw.find(b"END     ", pos)
        while stop != -1 and (stop - pos) % 80:  # 'END' must start a card
            stop = raw.find(b"END     ", stop + 1)
        text = raw[pos : len(raw) if stop == -1 else stop + 80].decode("ascii", "replace")
        for start in range(0, len(text), 80):
            card = text[start : start + 80]
            key = card[:8].strip()
            if key == "END":
                end = pos + start + 80
                break
            if key == "HIERARCH":
                k, eq, v = card[9:].partition("=")
                if eq:
                    try:
                        header[k.strip()] = _card_value(v)
                    except ValueError:
                        pass  # an odd HIERARCH card is never one the readers need
            elif card[8:10] == "= " and key:
                try:
                    header[key] = _card_value(card[10:])
                except ValueError:
                    return None
        if end is None:
            return None
        pos = -(-end // 2880) * 2880
        xt = header.get("XTENSION", "IMAGE")
        if xt == "BINTABLE":
            rows, width = int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0))
            nbytes = rows * width + int(header.get("PCOUNT", 0))
            if pos + nbytes > len(raw):
                return None
            dt = _bintable_dtype(header)
            data = np.frombuffer(raw, dt, rows, pos) if dt is not None and rows else None
            out.append((header, data))
            pos += -(-nbytes // 2880) * 2880
            continue
        if xt != "IMAGE" or "BSCALE" in header or "BZERO" in header \
                or header.get("BITPIX") not in _BITPIX or header.get("GROUPS"):
            return None
        shape = tuple(int(header[f"NAXIS{i}"]) for i in range(int(header.get("NAXIS", 0)), 0, -1))
        count = math.prod(shape) if shape else 0
        nbytes = count * abs(header["BITPIX"]) // 8
        if pos + nbytes > len(raw):
            return None  # truncated: let astropy produce its own message
        data = np.frombuffer(raw, _BITPIX[header["BITPIX"]], count, pos).reshape(shape) if count else None
        out.append((header, data))
        pos += -(-nbytes // 2880) * 2880
    return out


def _astropy_hdus(hdul) -> list:
    """The same [(header dict, data)] list from an astropy HDUList; tables only where a reader needs them."""
    from astropy.io import fits

    out = []
    for hdu in hdul:
        header = dict(hdu.header)
        data = None
        if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
            if str(header.get("EXTNAME", "")).lower() in ("velclass", "fibinfo"):
                data = np.asarray(hdu.data) if hdu.data is not None else None
        elif hdu.data is not None:
            data = np.asarray(hdu.data)
        out.append((header, data))
    return out


# ---------------------------------------------------------------- interpreting the HDUs

def _extname(h: dict) -> str:
    return str(h.get("EXTNAME", "")).strip().lower()


def _interpret(path: Path, hdus: list, vacuum, product: str) -> Spectrum | None:
    """Spectrum from a parsed HDU list: a GES CASU product or a 1-D image; None if neither."""
    names = {_extname(h): i for i, (h, _) in enumerate(hdus)}
    tables = [hdus[names[n]][1] for n in ("velclass", "fibinfo") if n in names and hdus[names[n]][1] is not None]
    if "normalised_spectrum" in names or "final_spectrum" in names:
        return _read_casu(path, hdus, names, tables, vacuum, product)
    index = next((i for i, (h, d) in enumerate(hdus) if d is not None and d.dtype.names is None
                  and (d.ndim == 1 or (d.ndim == 2 and 1 in d.shape))), None)
    if index is None:
        return None
    header = {**hdus[0][0], **hdus[index][0]} if index else dict(hdus[0][0])
    flux = np.asarray(hdus[index][1], dtype=float).ravel()
    error = None
    for h, data in hdus[1:]:
        kind = _ERROR_EXTENSIONS.get(str(h.get("EXTNAME", "")).upper())
        if kind and data is not None and data.dtype.names is None:
            error = _error_from(kind, data)
            break
    wave = _wcs_wavelength(path, hdus[index][0], flux.size)
    vac = _is_vacuum(header) if vacuum is None else vacuum
    return _finish(path, wave, flux, error, header, vac, **_meta(header, tables, path, None))


def _meta(header, tables, path, normalised) -> dict:
    vel = math.nan
    for t in tables:
        v = _first(t, "VEL")
        if v is not None and np.isfinite(v):
            vel = float(v)
            break
    return dict(vrad=vel, setup=header_setup(header) or name_setup(path.name),
                cname=_find_cname(header, tables, path), resolution=_resolution(header), normalised=normalised)


def _read_casu(path, hdus, names, tables, vacuum, product: str) -> Spectrum:
    """Gaia-ESO CASU product: `<product>_spectrum` + `<product>_ivar` (falls back to the other product)."""
    if product not in ("normalised", "final"):
        raise ValueError(f"product must be 'normalised' or 'final', got {product!r}")
    kind = product if f"{product}_spectrum" in names else ("final" if product == "normalised" else "normalised")
    h, flux = hdus[names[f"{kind}_spectrum"]]
    if flux is None or flux.ndim != 1:
        raise SpectrumError(f"{path}: extension {kind}_spectrum is not a 1-D spectrum")
    header = {**hdus[0][0], **h}
    flux = np.array(flux, dtype=float)
    wave = _wcs_wavelength(path, h, flux.size)
    ivar = hdus[names[f"{kind}_ivar"]][1] if f"{kind}_ivar" in names else None
    if kind == "normalised" and ivar is not None:
        ivar = _casu_normalised_ivar(hdus, names, flux, np.asarray(ivar, dtype=float).ravel())
    error = None
    if ivar is not None:
        ivar = np.asarray(ivar, dtype=float).ravel()
        if ivar.shape != flux.shape:
            raise SpectrumError(f"{path}: {kind}_ivar has {ivar.size} pixels but {kind}_spectrum {flux.size}")
        good = np.isfinite(ivar) & (ivar > 0)
        if not good.any():
            raise SpectrumError(f"{path}: {kind}_ivar is zero everywhere (no usable pixel)")
        lo, hi = np.flatnonzero(good)[[0, -1]]
        wave, flux, ivar, good = wave[lo : hi + 1], flux[lo : hi + 1], ivar[lo : hi + 1], good[lo : hi + 1]
        flux[~good] = np.nan  # unusable pixel inside the spectrum: repaired and masked downstream
        error = _error_from("ivar", ivar)
    vac = _is_vacuum(header) if vacuum is None else vacuum
    return _finish(path, wave, flux, error, header, vac, **_meta(header, tables, path, kind == "normalised"))


def _casu_normalised_ivar(hdus, names, norm_flux, norm_ivar):
    """The normalised spectrum's inverse variance, checked against final_ivar × continuum².

    The continuum is final_spectrum / normalised_spectrum, so a consistent normalised_ivar is
    final_ivar × continuum². CASU 'giraffe version 1.00' products (GES DR1, e.g.
    gir_19235180+0048006_H875.7.fit) hold final_ivar × continuum instead: the quoted error of
    the normalised flux is then ~40× too large (S/N ≈ 1.3 for a S/N 58 spectrum). Where the
    two disagree by more than a factor 2, the error is taken from final_ivar × continuum²
    (counted in `library_warnings`, so a run says how often it happened).
    """
    if "final_spectrum" not in names or "final_ivar" not in names:
        return norm_ivar
    final = hdus[names["final_spectrum"]][1]
    final_ivar = hdus[names["final_ivar"]][1]
    if final is None or final_ivar is None or final.size != norm_flux.size or final_ivar.size != norm_flux.size:
        return norm_ivar
    final, final_ivar = np.asarray(final, dtype=float).ravel(), np.asarray(final_ivar, dtype=float).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        k = slice(None, None, 16)  # the discrepancy is a smooth scale: every 16th pixel decides
        expected = final_ivar[k] * (final[k] / norm_flux[k]) ** 2
        ratio = np.nanmedian(np.where((expected > 0) & (norm_ivar[k] > 0), norm_ivar[k] / expected, np.nan))
        if np.isfinite(ratio) and not 0.5 < ratio < 2.0:
            library_warnings["starlabel: CASU normalised_ivar inconsistent with final_ivar x continuum^2 "
                             "(error taken from final_ivar)"] += 1
            expected = final_ivar * (final / norm_flux) ** 2
            return np.where(np.isfinite(expected), expected, 0.0)
    return norm_ivar


def read_fits(path, vacuum: bool | None = None, product: str = "normalised") -> Spectrum:
    """A FITS spectrum, whatever its layout (see the module docstring); `product` picks a GES CASU product."""
    from astropy.io import fits

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise SpectrumError(f"{path}: cannot open ({e})") from e
    hdus = _fast_hdus(raw) if raw[:9] == b"SIMPLE  =" else None
    if hdus:
        spec = _interpret(path, hdus, vacuum, product)
        if spec is not None:
            return spec
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(io.BytesIO(raw) if not path.name.lower().endswith('.gz') else path,
                           memmap=False) as hdul:
                spec = _interpret(path, _astropy_hdus(hdul), vacuum, product)
                if spec is not None:
                    return spec
                for hdu in hdul[1:]:
                    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                        return _read_phase3(path, hdu, dict(hdul[0].header), vacuum)
                raise SpectrumError(f"{path}: no spectrum (neither a 1-D image nor a WAVE/FLUX table)")
    except SpectrumError:
        raise
    except Exception as e:  # truncated, not FITS, bad header …
        raise SpectrumError(f"{path}: unreadable FITS file ({type(e).__name__}: {e})") from e
    finally:
        _count_warnings(caught)


def _column(path, table, names, required=True):
    upper = {c.upper(): c for c in table.columns.names}
    for name in names:
        if name in upper:
            return upper[name]
    if required:
        raise SpectrumError(f"{path}: table has no {names[0]} column (columns: {table.columns.names})")
    return None


def _read_phase3(path, hdu, primary_header: dict, vacuum) -> Spectrum:
    """ESO Phase 3 1-D spectrum: one row, array columns WAVE, FLUX, ERR (units in TUNITn)."""
    t = hdu.data
    if t is None or len(t) == 0:
        raise SpectrumError(f"{path}: spectrum table is empty")
    wcol = _column(path, hdu, ("WAVE", "WAVELENGTH", "LAMBDA"))
    fcol = _column(path, hdu, ("FLUX", "FLUX_REDUCED", "FLUX_NORM"))
    ecol = _column(path, hdu, ("ERR", "ERROR", "ERR_REDUCED", "SIGMA"), required=False)
    icol = None if ecol else _column(path, hdu, ("IVAR",), required=False)
    if len(t) == 1:  # one row with array columns
        get = lambda c: np.asarray(t[c][0], dtype=float)  # noqa: E731
    else:  # one row per pixel
        get = lambda c: np.asarray(t[c], dtype=float)  # noqa: E731
    header = {**primary_header, **dict(hdu.header)}
    names = list(hdu.columns.names)
    wunit = hdu.columns[names.index(wcol)].unit or ""
    try:
        wave = get(wcol) * _to_angstrom(str(wunit))
    except ValueError:
        raise SpectrumError(f"{path}: unknown wavelength unit {wunit!r} in column {wcol}") from None
    error = get(ecol) if ecol else (_error_from("ivar", get(icol)) if icol else None)
    vac = _is_vacuum(header) if vacuum is None else vacuum
    normalised = True if fcol.upper() == "FLUX_NORM" else None
    return _finish(path, wave, get(fcol), error, header, vac, **_meta(header, [], Path(path), normalised))


def read_text(path, wave_unit: str = "Angstrom", vacuum: bool = False) -> Spectrum:
    """Two or three columns (wavelength, flux[, error]); '#' comments; spaces or commas."""
    path = Path(path)
    try:
        with open(path) as fh:
            sample = "".join(line for _, line in zip(range(50), fh) if not line.startswith("#"))
        delimiter = "," if "," in sample else None
        data = np.loadtxt(path, comments="#", delimiter=delimiter, ndmin=2)
    except Exception as e:
        raise SpectrumError(f"{path}: unreadable text spectrum ({type(e).__name__}: {e})") from e
    if data.shape[1] < 2:
        raise SpectrumError(f"{path}: need at least two columns (wavelength, flux), found {data.shape[1]}")
    error = data[:, 2] if data.shape[1] >= 3 else None
    m = CNAME_PATTERN.search(path.name)
    return _finish(path, data[:, 0] * _to_angstrom(wave_unit), data[:, 1], error, {}, vacuum,
                   setup=name_setup(path.name), cname=m.group(1) if m else "")


def read_spectrum(path, vacuum: bool | None = None, product: str = "normalised",
                  wave_unit: str = "Angstrom") -> Spectrum:
    """Read any supported spectrum file, choosing the reader from its content (first bytes) and extension."""
    path = Path(path)
    name = path.name.lower()
    try:
        with open(path, "rb") as fh:
            magic = fh.read(9)
    except OSError as e:
        raise SpectrumError(f"{path}: cannot open ({e})") from e
    if name.endswith(FITS_SUFFIXES) or magic == b"SIMPLE  =" or magic[:2] == b"\x1f\x8b":
        return read_fits(path, vacuum=vacuum, product=product)
    return read_text(path, wave_unit=wave_unit, vacuum=bool(vacuum))


def write_ges_fits(path, wave0: float, step: float, flux, error=None, header: dict | None = None) -> None:
    """Write a simple 1-D spectrum (primary image + linear WCS, ERROR extension); for tests and mocks."""
    from astropy.io import fits

    primary = fits.PrimaryHDU(np.asarray(flux, dtype=np.float32))
    h = primary.header
    h["CRVAL1"], h["CDELT1"], h["CRPIX1"] = float(wave0), float(step), 1.0
    h["CTYPE1"], h["CUNIT1"] = "AWAV", "Angstrom"
    for k, v in (header or {}).items():
        h[k] = v
    hdus = [primary]
    if error is not None:
        hdus.append(fits.ImageHDU(np.asarray(error, dtype=np.float32), name="ERROR"))
    fits.HDUList(hdus).writeto(path, overwrite=True)


def write_casu_fits(path, wave0: float, step: float, flux, ivar, final=None, final_ivar=None,
                    header: dict | None = None, vel: float | None = None, cname: str = "") -> None:
    """Write a Gaia-ESO CASU-style product with astropy (for tests; the mock survey writes the same layout fast).

    Primary `final_spectrum` (defaults to `flux`), `final_ivar`, `normalised_spectrum`,
    `normalised_ivar` share one WCS (CRVAL1, CD1_1, CTYPE1 AWAV); `velclass` holds Cname, VEL.
    """
    from astropy.io import fits

    def image(cls, data, name):
        hdu = cls(np.asarray(data, dtype=np.float32))
        h = hdu.header
        h["CTYPE1"], h["CRPIX1"], h["CRVAL1"], h["CD1_1"], h["CUNIT1"] = "AWAV", 1.0, float(wave0), float(step), "Angstrom"
        h["EXTNAME"] = name
        for k, v in (header or {}).items():
            h[k] = v
        return hdu

    hdus = [image(fits.PrimaryHDU, flux if final is None else final, "final_spectrum"),
            image(fits.ImageHDU, ivar if final_ivar is None else final_ivar, "final_ivar"),
            image(fits.ImageHDU, flux, "normalised_spectrum"), image(fits.ImageHDU, ivar, "normalised_ivar")]
    if vel is not None:
        cols = [fits.Column("Cname", "16A", array=[cname]), fits.Column("VEL", "D", unit="km/s", array=[vel]),
                fits.Column("EVEL", "D", unit="km/s", array=[0.2])]
        hdus.append(fits.BinTableHDU.from_columns(cols, name="velclass"))
    fits.HDUList(hdus).writeto(path, overwrite=True)


def write_phase3_fits(path, wave, flux, error=None, wave_unit: str = "Angstrom", header: dict | None = None) -> None:
    """Write an ESO Phase 3-style spectrum: one table row with array columns WAVE, FLUX, ERR."""
    from astropy.io import fits

    n = len(wave)
    cols = [fits.Column("WAVE", f"{n}D", unit=wave_unit, array=[np.asarray(wave, float)]),
            fits.Column("FLUX", f"{n}E", array=[np.asarray(flux, np.float32)])]
    if error is not None:
        cols.append(fits.Column("ERR", f"{n}E", array=[np.asarray(error, np.float32)]))
    primary = fits.PrimaryHDU()
    for k, v in (header or {}).items():
        primary.header[k] = v
    fits.HDUList([primary, fits.BinTableHDU.from_columns(cols, name="SPECTRUM")]).writeto(path, overwrite=True)
