"""Throughput of `starlabel prepare` on a mock survey (issue 2 asks ≥ 300 stars/s on 2 cores).

    python benchmarks/bench_prepare.py [--n-stars 2000] [--workers 2] [--survey DIR]

Uses `starlabel synth survey` when it exists, otherwise writes its own GES-format mock
(random absorption lines, noise, Doppler shift, both setups). Prints stars/s and the
machine's load average, since the cores may be shared.
Recorded results: docs/benchmarks.md, "Speed of the stages".
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from starlabel.grid import GIRAFFE_NATIVE
from starlabel.io.spectra import write_ges_fits
from starlabel.stages.prepare import PrepareSettings, prepare


def simple_mock(out: Path, n_stars: int, seed: int = 1) -> Path:
    """A GES-format mock survey: DIR/catalogue.fits and DIR/spectra/<CNAME>_<SETUP>.fits."""
    rng = np.random.default_rng(seed)
    (out / "spectra").mkdir(parents=True, exist_ok=True)
    cnames = [f"{i:08d}-{rng.integers(1e7):07d}" for i in range(n_stars)]
    vrad = rng.normal(0, 60, n_stars)
    for cname, v in zip(cnames, vrad):
        for setup, (lo, hi, step) in GIRAFFE_NATIVE.items():
            wave = np.arange(lo, hi + step / 2, step)
            centres = rng.uniform(lo, hi, 150) * (1 + v / 299792.458)
            depth = rng.uniform(0.05, 0.7, 150)
            flux = np.ones_like(wave)
            for c, d in zip(centres, depth):
                k = slice(*np.searchsorted(wave, [c - 1.0, c + 1.0]))
                flux[k] -= d * np.exp(-0.5 * ((wave[k] - c) / 0.12) ** 2)
            flux += rng.normal(0, 0.01, wave.size)
            write_ges_fits(out / "spectra" / f"{cname}_{setup}.fits", lo, step, flux,
                           np.full(wave.size, 0.01), dict(CNAME=cname, SETUP=setup, SNR=100.0))
    Table({"CNAME": cnames, "SETUP": ["HR10|HR21"] * n_stars, "VRAD": vrad}).write(out / "catalogue.fits")
    return out


def make_survey(out: Path, n_stars: int, seed: int) -> Path:
    try:
        from starlabel.cli import main

        if main(["synth", "survey", "--out", str(out), "--n-stars", str(n_stars), "--seed", str(seed)]) == 0:
            return out
    except SystemExit:
        pass
    print("starlabel synth survey unavailable; writing a simple GES-format mock")
    return simple_mock(out, n_stars, seed)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-stars", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--survey", type=Path, help="existing survey directory (else a temporary one is made)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        survey = args.survey or make_survey(Path(tmp) / "survey", args.n_stars, seed=1)
        settings = PrepareSettings(workers=args.workers, chunk=args.chunk)
        load0 = os.getloadavg()
        cpu0, t0 = os.times(), time.perf_counter()
        _, n, rejects = prepare(survey / "catalogue.fits", survey / "spectra", Path(tmp) / "ds.h5", settings,
                                progress=False)
        dt, cpu1 = time.perf_counter() - t0, os.times()
        load1 = os.getloadavg()
    # CPU seconds of this process and its (reaped) workers: the rate the work allows on idle cores
    cpu = sum(cpu1[:4]) - sum(cpu0[:4])
    total = n + len(set(rejects["CNAME"]))
    cores = min(args.workers, os.cpu_count())
    print(f"prepared {n} stars ({len(rejects)} rejected spectra) in {dt:.1f} s with {args.workers} workers: "
          f"{total / dt:.0f} stars/s wall")
    print(f"CPU {1e3 * cpu / total:.2f} ms per star → {total * cores / cpu:.0f} stars/s on {cores} idle cores")
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
