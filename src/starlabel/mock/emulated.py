"""The emulator engine of the mock survey: PySME spectra (through `emulator.Emulator`) observed like
the one-layer engine's.

`synthesize` has `engine.synthesize`'s signature, so the survey swaps one for the other: the
emulator gives the rest-frame, unbroadened flux on its own grid; here it is Doppler-shifted,
broadened by the same instrument ⊗ macroturbulence ⊗ rotation kernel as the one-layer engine
(`engine.broaden`) and rebinned flux-conservingly onto the requested pixels.

Labels outside the emulator's training box are clipped to it (a Payne-style network extrapolates
badly); `outside_box` counts such stars so that a survey can say so.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from ..grid import resample
from . import engine
from .emulator import EMU_GRID, LABELS, Emulator, emu_wavelength
from .engine import C_KMS, broaden, macroturbulence, microturbulence

log = logging.getLogger(__name__)

ALPHA = ("Si", "Ca", "Ti")
PAD = 200  # pixels around the one-layer pieces
EDGE = 1.0  # Å kept clear of each window edge, where the broadening kernel runs off the emulated flux


@lru_cache(maxsize=4)
def load(path: str | None = None) -> Emulator:
    """The shipped emulator (or the one at `path`), loaded once per process. (It leaves torch's thread
    count alone: a process that synthesises a survey may train or predict next.)"""
    return Emulator.load(path)


def label_vector(teff, logg, feh, abundances: dict | None, vmic: float) -> np.ndarray:
    """The emulator's 7 labels (order `emulator.LABELS`) from `engine.synthesize`'s arguments:
    [Mg/Fe], [Al/Fe] and [α/Fe] as the mean of the Si, Ca, Ti entries given (0 when none)."""
    ab = abundances or {}
    alpha = [ab[e] for e in ALPHA if e in ab]
    values = {"teff": teff, "logg": logg, "feh": feh, "mg_fe": ab.get("Mg", 0.0), "al_fe": ab.get("Al", 0.0),
              "alpha_fe": float(np.mean(alpha)) if alpha else 0.0, "vmic": vmic}
    return np.array([float(values[k]) for k in LABELS])


def outside_box(truth, emulator: str | None = None) -> int:
    """How many rows of a mock truth table lie outside the emulator's label box (they get clipped)."""
    emu = load(emulator)
    x = np.column_stack([np.asarray(truth[c], float) for c in ("TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE", "ALPHA_FE")])
    x = np.column_stack([x, microturbulence(x[:, 0], x[:, 1])])
    return int(np.sum(np.any((x < emu.lo) | (x > emu.hi), axis=1)))


def observe(wave_in, flux_in, wave, resolution: float | None, vmac: float, vsini: float) -> np.ndarray:
    """Unbroadened flux (on the uniform `wave_in`) as GIRAFFE sees it on `wave`: instrument R ⊗ v_mac ⊗
    v sin i with the one-layer engine's kernel (`engine.broaden`), then flux-conserving rebinning. The
    mock survey and `predict --model-spectra` both observe emulated spectra through this function."""
    return resample(wave_in, broaden(np.asarray(flux_in, float), wave_in, resolution, vmac, vsini), wave)[0]


def synthesize(wave, teff: float, logg: float, feh: float, abundances: dict | None = None,
               vsini: float = 0.0, resolution: float | None = None, vrad: float = 0.0,
               vmic: float | None = None, vmac: float | None = None, emulator: str | None = None) -> np.ndarray:
    """Continuum-normalised flux on `wave` (air Å) — `engine.synthesize`'s contract, PySME's physics.

    Pixels inside the emulator's windows (HR10 5340–5610 Å, HR21 8470–8940 Å in the rest frame, less
    `EDGE`) are emulated; the few beyond them (the GIRAFFE product's edges, outside the pipeline grid)
    come from the one-layer engine. `emulator` is a safetensors path (default: the shipped file).
    """
    wave = np.asarray(wave, dtype=float)
    if wave.ndim != 1 or wave.size < 2 or np.any(np.diff(wave) <= 0):
        raise ValueError("synthesize: wave must be a 1-D strictly increasing array of air wavelengths [Å]")
    emu = load(emulator)
    vmic = float(microturbulence(teff, logg)) if vmic is None else vmic
    vmac = float(macroturbulence(teff, logg)) if vmac is None else vmac
    labels = label_vector(teff, logg, feh, abundances, vmic)
    flux = emu.flux(np.clip(labels, emu.lo, emu.hi))[0]
    shift = 1.0 + vrad / C_KMS
    out = np.full(wave.size, np.nan)
    for setup, sl in emu.slices.items():
        rest = emu_wavelength(setup)
        lo, hi = rest[0] * shift + EDGE, rest[-1] * shift - EDGE
        inside_window = (wave >= lo) & (wave <= hi)
        if inside_window.sum() > 1:
            out[inside_window] = observe(rest * shift, flux[sl], wave[inside_window], resolution, vmac, vsini)
    rest_of = ~np.isfinite(out)
    if rest_of.all():
        windows = ", ".join(f"{s} {lo:.0f}–{hi:.0f} Å" for s, (lo, hi, _) in EMU_GRID.items())
        raise ValueError(f"wavelengths {wave[0]:.1f}–{wave[-1]:.1f} Å (vrad {vrad:+.1f} km/s) are outside the "
                         f"emulator's windows ({windows})")
    # the product's edges beyond the emulator's window (outside the pipeline grid): one-layer flux,
    # synthesised per contiguous piece with PAD pixels of padding (a piece may be one pixel wide, and the
    # broadening kernel must fit inside what is synthesised)
    for piece in np.split(np.flatnonzero(rest_of), np.flatnonzero(np.diff(np.flatnonzero(rest_of)) > 1) + 1):
        if piece.size:
            lo, hi = max(piece[0] - PAD, 0), min(piece[-1] + 1 + PAD, wave.size)
            out[piece] = engine.synthesize(wave[lo:hi], teff, logg, feh, abundances, vsini, resolution, vrad,
                                           vmic, vmac)[piece - lo]
    return out
