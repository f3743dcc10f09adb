"""Spectrum readers: Gaia-ESO 1-D image FITS, ESO Phase 3 binary tables, plain text.

Every reader returns a `Spectrum(wave, flux, error, header)`: air wavelengths in Å
(increasing), flux and 1σ error (None when the file has none) as float64 arrays, and
the header as a plain dict. `read_spectrum` picks the reader from the extension and,
for FITS, from the content (an image in the primary HDU, or a table with WAVE/FLUX).

Any problem raises `SpectrumError` naming the file, so batch stages can list it in
their rejects table and carry on.
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
TEXT_SUFFIXES = (".txt", ".dat", ".csv", ".asc", ".tsv")
SPECTRUM_SUFFIXES = FITS_SUFFIXES + TEXT_SUFFIXES

# extension names that carry the flux uncertainty, and how to turn them into a 1σ error
_ERROR_EXTENSIONS = {"ERROR": "sigma", "ERR": "sigma", "SIGMA": "sigma", "IVAR": "ivar",
                     "INVVAR": "ivar", "VARIANCE": "var", "VAR": "var"}


class SpectrumError(ValueError):
    """A spectrum file that cannot be read or makes no sense; the message names the file."""


class Spectrum(NamedTuple):
    wave: np.ndarray  # air wavelength [Å], increasing
    flux: np.ndarray
    error: np.ndarray | None  # 1σ flux error, or None
    header: dict


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


def _finish(path, wave, flux, error, header, vacuum: bool) -> Spectrum:
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
    return Spectrum(wave, flux, error, header)


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


_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


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


def _fast_image_hdus(raw: bytes):
    """Minimal FITS parser for plain image HDUs: [(header dict, data array)], or None if anything is unusual.

    Parsing a few keywords by hand is ~20× faster than astropy.io.fits for the small
    per-star files of a survey; any file this does not understand (tables, scaling,
    compression, odd cards) goes to astropy instead.
    """
    out, pos = [], 0
    while pos < len(raw):
        header, end = {}, None
        for start in range(pos, len(raw), 80):
            card = raw[start : start + 80].decode("ascii", "replace")
            key = card[:8].strip()
            if key == "END":
                end = start + 80
                break
            if card[8:10] == "= " and key:
                try:
                    header[key] = _card_value(card[10:])
                except ValueError:
                    return None
        if end is None:
            return None
        pos = -(-end // 2880) * 2880
        if header.get("XTENSION", "IMAGE") != "IMAGE" or "BSCALE" in header or "BZERO" in header \
                or header.get("BITPIX") not in _BITPIX or header.get("GROUPS"):
            return None
        shape = tuple(int(header[f"NAXIS{i}"]) for i in range(int(header.get("NAXIS", 0)), 0, -1))
        count = int(np.prod(shape)) if shape else 0
        nbytes = count * abs(header["BITPIX"]) // 8
        if pos + nbytes > len(raw):
            return None  # truncated: let astropy produce its own message
        data = np.frombuffer(raw, _BITPIX[header["BITPIX"]], count, pos).reshape(shape) if count else None
        out.append((header, data))
        pos += -(-nbytes // 2880) * 2880
    return out


def _read_fast(path, raw: bytes, vacuum) -> Spectrum | None:
    hdus = _fast_image_hdus(raw) if raw[:9] == b"SIMPLE  =" else None
    if not hdus or hdus[0][1] is None or hdus[0][1].ndim != 1:
        return None
    header, flux = hdus[0]
    error = None
    for h, data in hdus[1:]:
        kind = _ERROR_EXTENSIONS.get(str(h.get("EXTNAME", "")).upper())
        if kind and data is not None:
            error = _error_from(kind, data)
            break
    wave = _wcs_wavelength(path, header, flux.size)
    vac = _is_vacuum(header) if vacuum is None else vacuum
    return _finish(path, wave, flux, error, header, vac)


def read_fits(path, vacuum: bool | None = None) -> Spectrum:
    """A FITS spectrum: 1-D image with WCS (GES) or a WAVE/FLUX/ERR table (ESO Phase 3)."""
    from astropy.io import fits

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise SpectrumError(f"{path}: cannot open ({e})") from e
    fast = _read_fast(path, raw, vacuum)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(raw) if not path.name.lower().endswith('.gz') else path,
                           memmap=False) as hdul:
                primary = hdul[0]
                if primary.data is not None and primary.header.get("NAXIS", 0) >= 1:
                    return _read_image(path, hdul, vacuum)
                for hdu in hdul[1:]:
                    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                        return _read_phase3(path, hdu, dict(primary.header), vacuum)
                    if hdu.data is not None and hdu.header.get("NAXIS", 0) == 1:
                        return _read_image(path, hdul, vacuum, index=hdul.index_of(hdu))
                raise SpectrumError(f"{path}: no spectrum (neither a 1-D image nor a WAVE/FLUX table)")
    except SpectrumError:
        raise
    except Exception as e:  # truncated, not FITS, bad header …
        raise SpectrumError(f"{path}: unreadable FITS file ({type(e).__name__}: {e})") from e


def _read_image(path, hdul, vacuum, index: int = 0) -> Spectrum:
    hdu = hdul[index]
    flux = np.asarray(hdu.data, dtype=float)
    if flux.ndim != 1:
        if flux.ndim == 2 and 1 in flux.shape:
            flux = flux.ravel()
        else:
            raise SpectrumError(f"{path}: image HDU {index} has shape {flux.shape}, expected a 1-D spectrum")
    header = dict(hdu.header)
    wave = _wcs_wavelength(path, header, flux.size)
    error = None
    for h in hdul[1:]:
        kind = _ERROR_EXTENSIONS.get(str(h.header.get("EXTNAME", "")).upper())
        if kind and h.data is not None:
            error = _error_from(kind, h.data)
            break
    vac = _is_vacuum(header) if vacuum is None else vacuum
    return _finish(path, wave, flux, error, header, vac)


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
    return _finish(path, wave, get(fcol), error, header, vac)


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
    return _finish(path, data[:, 0] * _to_angstrom(wave_unit), data[:, 1], error, {}, vacuum)


def read_spectrum(path, **kwargs) -> Spectrum:
    """Read any supported spectrum file, choosing the reader from its extension or first bytes."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(FITS_SUFFIXES):
        return read_fits(path, **kwargs)
    if name.endswith(TEXT_SUFFIXES):
        return read_text(path, **kwargs)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(9)
    except OSError as e:
        raise SpectrumError(f"{path}: cannot open ({e})") from e
    if magic == b"SIMPLE  =" or magic[:2] == b"\x1f\x8b":
        return read_fits(path, **kwargs)
    return read_text(path, **kwargs)


def write_ges_fits(path, wave0: float, step: float, flux, error=None, header: dict | None = None) -> None:
    """Write a GES-style 1-D spectrum (primary image + linear WCS, ERROR extension); for tests and mocks."""
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
