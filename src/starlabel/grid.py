"""The output wavelength grid: one segment per instrument setup, and flux-conserving resampling.

The paper (Sect. 2.1) resamples GIRAFFE HR10 to 0.06 Å and HR21 to 0.1 Å, cuts
them to 5350–5600 Å and 8480–8930 Å and concatenates them into 8669 pixels.
That grid is `Grid.default()`; any other set of setups can be described the same way.
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
class Grid:
    """Ordered setups; the network input is their concatenation."""

    setups: tuple[Setup, ...]

    @classmethod
    def default(cls) -> "Grid":
        return cls((HR10, HR21))

    @classmethod
    def from_spec(cls, spec: str) -> "Grid":
        """Parse 'HR10' / 'HR10,HR21' / 'NAME:start:stop:step,...' (CLI form)."""
        known = {"HR10": HR10, "HR21": HR21}
        setups = []
        for item in spec.split(","):
            item = item.strip()
            if item.upper() in known:
                setups.append(known[item.upper()])
                continue
            parts = item.split(":")
            if len(parts) != 4:
                raise ValueError(
                    f"grid segment {item!r}: expected a known setup (HR10, HR21) or NAME:start:stop:step"
                )
            setups.append(Setup(parts[0], float(parts[1]), float(parts[2]), float(parts[3])))
        return cls(tuple(setups))

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
