"""Pixels the networks must not read: wavelength windows (tellurics, diffuse interstellar bands) and the
lines of elements whose line data the training spectra get wrong.

A network trained on synthetic spectra learns every line the synthesis draws, right or wrong; on a real star
the wrong ones pull its labels (for the mock survey: the HR10 lines of Ti, V, Cr, Mn, Co and Ni, whose line
data lack VALD values and hyperfine structure, carry most of the real Sun's log g offset; README,
sim-to-real). `train --exclude-windows/--exclude-elements` sets those pixels to the continuum (1.0) in every
training spectrum; the bundle records them and `Ensemble` sets them to 1.0 in every spectrum it labels, so
the labels cannot depend on them (The Payne and The Cannon mask pixels the same way).
"""

from __future__ import annotations

import numpy as np

#: Å on either side of a listed line that count as that line (≈ the GIRAFFE HR10 FWHM, 0.27 Å, and a little)
DEFAULT_HALFWIDTH = 0.2


def parse_windows(text: str) -> list[tuple[float, float]]:
    """'8619-8624,5420.1-5420.6' → [(8619.0, 8624.0), (5420.1, 5420.6)]; a clear error names a bad item."""
    windows = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        try:
            lo, hi = (float(v) for v in item.split("-"))
        except ValueError:
            raise ValueError(f"exclusion window {item!r} is not LOW-HIGH in Å (e.g. 8619-8624)") from None
        if not lo < hi:
            raise ValueError(f"exclusion window {item!r}: LOW must be below HIGH")
        windows.append((lo, hi))
    return windows


def excluded_pixels(wavelength, windows=(), elements=(), halfwidth: float = DEFAULT_HALFWIDTH,
                    lines=None, elements_within=None) -> np.ndarray:
    """Boolean mask over `wavelength`: inside any of `windows` ((low, high) Å), or within `halfwidth` Å of a
    line of one of `elements` (symbols, e.g. 'Mn') in `lines` (default: starlabel's line list); with
    `elements_within` ((low, high) Å ranges, e.g. one setup's) only the lines inside them count."""
    wave = np.asarray(wavelength, dtype=float)
    out = np.zeros(wave.size, bool)
    for lo, hi in windows:
        out |= (wave >= lo) & (wave <= hi)
    if elements:
        if lines is None:
            from .io.linelist import read_linelist

            lines = read_linelist()
        wanted = {e.strip().capitalize() for e in elements}
        known = {str(e) for e in lines["ELEMENT"]}
        if wanted - known:
            raise ValueError(f"no lines of {', '.join(sorted(wanted - known))} in the line list "
                             f"(it has {', '.join(sorted(known))})")
        chosen = np.asarray(lines["WAVELENGTH"])[np.isin(np.asarray(lines["ELEMENT"]).astype(str), list(wanted))]
        if elements_within is not None:
            chosen = chosen[np.any([(chosen >= lo) & (chosen <= hi) for lo, hi in elements_within], axis=0)]
        for w in chosen:
            out[np.searchsorted(wave, w - halfwidth):np.searchsorted(wave, w + halfwidth, side="right")] = True
    return out


def for_grid(grid, windows=(), elements=(), halfwidth: float = DEFAULT_HALFWIDTH, setups=None,
             source="the data") -> np.ndarray:
    """`excluded_pixels` on a `Grid`, the element lines limited to the named `setups` if given (a clear error
    names a setup the grid of `source` lacks)."""
    within = None
    if setups:
        if not elements:
            raise ValueError("--exclude-setups says where to exclude the lines of --exclude-elements; name the elements")
        unknown = sorted(set(setups) - set(grid.names))
        if unknown:
            raise ValueError(f"--exclude-setups {', '.join(unknown)}: not on the grid of {source} "
                             f"({', '.join(grid.names)})")
        within = [(grid.setup(n).start, grid.setup(n).stop) for n in setups]
    return excluded_pixels(grid.wavelength, windows, elements, halfwidth, elements_within=within)


def blanked(flux, mask: np.ndarray) -> np.ndarray:
    """A float32 copy of `flux` (N, P) with the `mask` pixels at the continuum, 1.0 (the caller's array stays)."""
    out = np.array(flux, dtype=np.float32)
    out[:, mask] = 1.0
    return out


def to_runs(mask: np.ndarray) -> list[list[int]]:
    """[[start, stop), …] index runs of a boolean mask: compact enough for a JSON manifest."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]])))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def from_runs(runs, n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for a, b in runs:
        mask[a:b] = True
    return mask
