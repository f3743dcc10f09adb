"""The output wavelength grid: one segment per instrument setup, and flux-conserving resampling.

The paper (Sect. 2.1) resamples GIRAFFE HR10 to 0.06 Å and HR21 to 0.1 Å, cuts
them to 5350–5600 Å and 8480–8930 Å and concatenates them into 8669 pixels.
That grid is `Grid.default()`; any other set of setups can be described the same way:
`SETUPS` / `SETUP_INFO` name GIRAFFE HR10, HR15N, HR21, UVES 580 and the 4MOST HRS and WEAVE HR
windows with their resolving powers and sources, `NAMED_GRIDS` groups them (`Grid.from_spec`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Setup:
    """One contiguous wavelength segment of the grid (air, Å)."""

    name: str
    start: float
    stop: float
    step: float

    @property
    def n_pixels(self) -> int:
        # round() so that 5350–5600 Å at 0.06 Å gives the paper's pixel count
        return int(round((self.stop - self.start) / self.step)) + 1

    @property
    def wavelength(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.n_pixels)


# The paper's grid and GIRAFFE's native coverage of the two setups.
HR10 = Setup("HR10", 5350.0, 5600.0, 0.06)
HR21 = Setup("HR21", 8480.0, 8930.0, 0.10)
GIRAFFE_NATIVE = {"HR10": (5339.0, 5619.0, 0.05), "HR21": (8484.0, 9001.0, 0.05)}
GIRAFFE_RESOLUTION = {"HR10": 19800.0, "HR21": 16200.0}


@dataclass(frozen=True)
class SetupInfo:
    """What starlabel knows about a named setup: instrument, resolving power, where the numbers come from."""

    instrument: str
    resolution: float  # nominal resolving power R = λ/Δλ(FWHM) of the setup's spectra
    source: str


# Named setups. Grid steps sample the line-spread FWHM with ≳ 4 pixels, as the paper's 0.06 Å does
# for HR10 (FWHM 0.28 Å). Ranges are the instruments' nominal coverage, trimmed a few Å at the ends.
# GIRAFFE (Medusa fibres): ESO FLAMES/GIRAFFE setup table (www.eso.org/sci/facilities/paranal/
#   instruments/flames/inst/Giraffe.html): HR10 533.9–561.9 nm R 19 800; HR15N 647.0–679.0 nm R 17 000;
#   HR21 848.4–900.1 nm R 16 200. HR10/HR21 cuts are the paper's (Ambrosch et al. 2023, Sect. 2.1).
# UVES 580 (red arm, fibre mode as used by Gaia-ESO): 476–684 nm with the CCD gap near 580 nm,
#   R ≈ 47 000 (ESO UVES user manual; Gaia-ESO: Sacco et al. 2014). The gap is masked as uncovered.
# 4MOST HRS: 392.6–435.5, 516–573, 610–679 nm, R > 18 500 (R ≈ 18 000–21 000; ESO 4MOST instrument
#   page www.eso.org/sci/facilities/paranal/instruments/4most/inst.html); R = 20 000 assumed here.
# WEAVE HR (MOS): blue 'B HR1' 404–465 nm, red 'R HR' 595–685 nm (ING WEAVE spectroscopy page,
#   www.ing.iac.es/Astronomy/instruments/weave/), R ≈ 20 000 for the MOS fibres (LIFU: half).
SETUPS = {
    "HR10": HR10,
    "HR21": HR21,
    "HR15N": Setup("HR15N", 6475.0, 6785.0, 0.08),
    "U580": Setup("U580", 4780.0, 6820.0, 0.025),
    "HRS_B": Setup("HRS_B", 3930.0, 4350.0, 0.04),
    "HRS_G": Setup("HRS_G", 5165.0, 5725.0, 0.05),
    "HRS_R": Setup("HRS_R", 6105.0, 6785.0, 0.06),
    "WHR_B": Setup("WHR_B", 4045.0, 4645.0, 0.04),
    "WHR_R": Setup("WHR_R", 5955.0, 6845.0, 0.06),
}
_GIR = "ESO FLAMES/GIRAFFE setup table"
SETUP_INFO = {
    "HR10": SetupInfo("GIRAFFE", 19800.0, _GIR),
    "HR21": SetupInfo("GIRAFFE", 16200.0, _GIR),
    "HR15N": SetupInfo("GIRAFFE", 17000.0, _GIR),
    "U580": SetupInfo("UVES", 47000.0, "ESO UVES user manual; Sacco et al. 2014"),
    "HRS_B": SetupInfo("4MOST", 20000.0, "ESO 4MOST instrument page (HRS, R > 18 500)"),
    "HRS_G": SetupInfo("4MOST", 20000.0, "ESO 4MOST instrument page (HRS, R > 18 500)"),
    "HRS_R": SetupInfo("4MOST", 20000.0, "ESO 4MOST instrument page (HRS, R > 18 500)"),
    "WHR_B": SetupInfo("WEAVE", 20000.0, "ING WEAVE spectroscopy page (HR modes)"),
    "WHR_R": SetupInfo("WEAVE", 20000.0, "ING WEAVE spectroscopy page (HR modes)"),
}
# Named grids: several setups under one name (--grid 4MOST-HRS).
NAMED_GRIDS = {"GES": ("HR10", "HR21"), "4MOST-HRS": ("HRS_B", "HRS_G", "HRS_R"), "WEAVE-HR": ("WHR_B", "WHR_R"),
               "UVES580": ("U580",)}
INSTRUMENTS = {"GIRAFFE", "UVES", "4MOST", "WEAVE"}


def setup_resolution(name: str) -> float | None:
    """Nominal resolving power of a named setup, or of a `--grid NAME:start:stop:step:R` segment."""
    if name in SETUP_INFO:
        return SETUP_INFO[name].resolution
    return _CUSTOM_R.get(name)


def setup_instrument(name: str) -> str:
    return SETUP_INFO[name].instrument if name in SETUP_INFO else ""


_CUSTOM_R: dict[str, float] = {}


@dataclass(frozen=True)
class Grid:
    """Ordered setups; the network input is their concatenation."""

    setups: tuple[Setup, ...]

    @classmethod
    def default(cls) -> "Grid":
        return cls((HR10, HR21))

    @classmethod
    def from_spec(cls, spec: str) -> "Grid":
        """Parse a grid spec (CLI form), comma-separated items:

        a named setup (HR10, HR15N, HR21, U580, HRS_B/G/R, WHR_B/R), a named grid (GES = HR10,HR21;
        4MOST-HRS; WEAVE-HR; UVES580), or a segment NAME:start:stop:step[:R] (R: its resolving power,
        used to degrade sharper spectra; without it no resolution matching for that segment).
        """
        setups = []
        for item in spec.split(","):
            item = item.strip()
            if item.upper() in SETUPS:
                setups.append(SETUPS[item.upper()])
                continue
            if item.upper() in NAMED_GRIDS:
                setups += [SETUPS[n] for n in NAMED_GRIDS[item.upper()]]
                continue
            parts = item.split(":")
            if len(parts) not in (4, 5):
                raise ValueError(
                    f"grid segment {item!r}: expected a known setup ({', '.join(SETUPS)}), a named grid "
                    f"({', '.join(NAMED_GRIDS)}) or NAME:start:stop:step[:R]"
                )
            setup = Setup(parts[0], float(parts[1]), float(parts[2]), float(parts[3]))
            if not (setup.stop > setup.start and setup.step > 0):
                raise ValueError(f"grid segment {item!r}: need start < stop and step > 0")
            if len(parts) == 5:
                _CUSTOM_R[setup.name] = float(parts[4])
            setups.append(setup)
        names = [s.name for s in setups]
        if len(set(names)) != len(names):
            raise ValueError(f"grid {spec!r} names a setup twice")
        return cls(tuple(setups))

    @property
    def instruments(self) -> set[str]:
        return {setup_instrument(n) for n in self.names} - {""}

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.setups]

    @property
    def n_pixels(self) -> int:
        return sum(s.n_pixels for s in self.setups)

    @property
    def wavelength(self) -> np.ndarray:
        return np.concatenate([s.wavelength for s in self.setups])

    def slices(self) -> dict[str, slice]:
        """Where each setup lives in the concatenated vector."""
        out, i = {}, 0
        for s in self.setups:
            out[s.name] = slice(i, i + s.n_pixels)
            i += s.n_pixels
        return out

    def setup(self, name: str) -> Setup:
        for s in self.setups:
            if s.name == name:
                return s
        raise KeyError(f"grid has no setup {name!r} (it has {self.names})")

    def to_json(self) -> str:
        return json.dumps([asdict(s) for s in self.setups])

    @classmethod
    def from_json(cls, text: str) -> "Grid":
        return cls(tuple(Setup(**d) for d in json.loads(text)))


def pixel_edges(centres: np.ndarray) -> np.ndarray:
    """Bin edges halfway between pixel centres (extrapolated at both ends)."""
    c = np.asarray(centres, dtype=float)
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def resample(wave: np.ndarray, flux: np.ndarray, new_wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flux-conserving rebinning of `flux` (on pixel centres `wave`) onto `new_wave` centres.

    Integrates the step function defined by the input pixels over each output bin
    and divides by the bin width, so a line's equivalent width and centroid are kept.
    `flux` may be 1-D or (n_spectra, n_pixels) sharing one `wave`.
    Returns (new_flux, covered): output bins not fully inside the input are NaN and
    `covered` is False there.
    """
    wave = np.asarray(wave, dtype=float)
    flux = np.asarray(flux, dtype=float)
    edges = pixel_edges(wave)
    cum = np.concatenate(
        [np.zeros(flux.shape[:-1] + (1,)), np.cumsum(flux * np.diff(edges), axis=-1)], axis=-1
    )
    new_edges = pixel_edges(new_wave)
    covered = (new_edges[:-1] >= edges[0]) & (new_edges[1:] <= edges[-1])
    # piecewise-linear cumulative integral == exact integral of the step function
    idx = np.clip(np.searchsorted(edges, new_edges) - 1, 0, len(edges) - 2)
    frac = (new_edges - edges[idx]) / (edges[idx + 1] - edges[idx])
    cum_at = cum[..., idx] + frac * (cum[..., idx + 1] - cum[..., idx])
    new_flux = np.diff(cum_at, axis=-1) / np.diff(new_edges)
    new_flux[..., ~covered] = np.nan
    return new_flux, covered


def resample_variance(wave: np.ndarray, var: np.ndarray, new_wave: np.ndarray) -> np.ndarray:
    """The variance of `resample`'s output for independent input pixels of variance `var` (finite).

    `resample` gives out_k = Σ_i o_ki f_i / Δ_k (o_ki: overlap of input pixel i with output bin k of
    width Δ_k), so var_k = Σ_i o_ki² var_i / Δ_k²: a 0.1-Å bin averaging two 0.05-Å pixels has σ/√2,
    a 0.06-Å bin over 1.2 of them σ × 0.71–0.85 depending on where the edges fall. Exact per pixel;
    neighbouring output bins that share an input pixel are correlated, which this does not record
    (a χ² summed over them keeps its mean, its scatter grows a little). NaN where `resample` is NaN."""
    wave = np.asarray(wave, dtype=float)
    var = np.asarray(var, dtype=float)
    edges = pixel_edges(wave)
    width = np.diff(edges)
    n = wave.size
    cum = np.concatenate([np.zeros(var.shape[:-1] + (1,)), np.cumsum(var * width**2, axis=-1)], axis=-1)
    new_edges = pixel_edges(new_wave)
    a, b = new_edges[:-1], new_edges[1:]
    covered = (a >= edges[0]) & (b <= edges[-1])
    ia = np.clip(np.searchsorted(edges, a, side="right") - 1, 0, n - 1)  # input pixel holding the left edge
    ib = np.clip(np.searchsorted(edges, b, side="left") - 1, 0, n - 1)  # … and the right edge
    same = ia == ib
    o_a = np.where(same, b - a, edges[ia + 1] - a)
    o_b = np.where(same, 0.0, b - edges[ib])
    inner = np.where(ib > ia + 1, cum[..., ib] - cum[..., np.minimum(ia + 1, ib)], 0.0)
    out = (o_a**2 * var[..., ia] + o_b**2 * var[..., ib] + inner) / (b - a) ** 2
    out[..., ~covered] = np.nan
    return out
