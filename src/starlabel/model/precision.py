"""Mixed-precision inference, used only where it keeps the labels of fp32.

`torch.autocast` runs the convolutions and dense layers in bfloat16 or float16 (tensor cores on a
GPU; bf16 units on recent CPUs). Whether that is harmless depends on the networks and the data, so
it is measured, not assumed: `label_error` compares a sample's labels with fp32, and `choose`
keeps the first candidate within `TOLERANCE` (the issue's gate: 1 K in Teff, 0.001 dex otherwise).
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHOICES = (*DTYPES, "auto")


def tolerance(name: str) -> float:
    """Largest |label(mixed) − label(fp32)| accepted: 1 K for temperatures, 0.001 dex for the rest."""
    return 1.0 if name.upper().startswith("TEFF") else 1e-3


def context(device: torch.device, precision: str):
    """inference_mode, plus autocast to `precision` unless it is fp32 (thread-local: enter it in each
    worker thread)."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {sorted(DTYPES)}, got {precision!r}")
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if DTYPES[precision] is not None:
        stack.enter_context(torch.autocast(device.type, dtype=DTYPES[precision]))
    return stack


def label_error(ensemble, flux, precision: str) -> dict[str, float]:
    """Max |ensemble-mean label at `precision` − at fp32| per label over the spectra `flux`."""
    saved = ensemble.precision
    try:
        ensemble.precision = "fp32"
        ref = ensemble.predict_each(flux).mean(0)
        ensemble.precision = precision
        mixed = ensemble.predict_each(flux).mean(0)
    finally:
        ensemble.precision = saved
    return {n: float(np.nanmax(np.abs(mixed[:, j] - ref[:, j]))) for j, n in enumerate(ensemble.labels.names)}


def choose(ensemble, sample, requested: str = "auto") -> str:
    """The precision to label with: `requested` if it is fp32 or passes the gate on `sample`; with
    "auto", the first of bf16, fp16 that passes (fp16 only on a GPU); else fp32. Logs the errors."""
    if requested == "fp32":
        return "fp32"
    if len(sample) == 0:
        log.warning("no finite spectrum to check %s against fp32 on: labelling in fp32", requested)
        return "fp32"
    candidates = [requested] if requested != "auto" else (["bf16", "fp16"] if ensemble.device.type == "cuda"
                                                          else ["bf16"])
    for precision in candidates:
        try:
            err = label_error(ensemble, sample, precision)
        except RuntimeError as e:  # autocast to this dtype not supported on this device
            log.info("%s not usable on %s: %s", precision, ensemble.device, e)
            continue
        worst = {n: e for n, e in err.items() if e > tolerance(n)}
        shown = ", ".join(f"{n} {e:.2g}" for n, e in err.items())
        if not worst:
            log.info("labelling in %s: max |Δ| against fp32 on %d spectra: %s", precision, len(sample), shown)
            return precision
        log.warning("%s moves labels beyond 1 K / 0.001 dex of fp32 (%s on %d spectra): labelling in fp32",
                    precision, shown, len(sample))
    return "fp32"
