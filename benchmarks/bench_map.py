"""Speed of the similarity map: building a map of 37 000 spectra, and placing 2 000 new ones onto it.

Targets (issue 4, on 2 cores): map ≤ 5 minutes; placing 2 000 spectra ≤ 10 s.
Toy spectra on the paper's 8669-pixel grid (Gaussian lines whose depths follow two hidden
labels, white noise at S/N 10-200) stand in for a survey: the cost depends on the array sizes,
not on the physics. Prints the machine load with the timings, since shared cores skew them.

    python benchmarks/bench_map.py [--n 37000] [--new 2000] [--pixels 8669] [--jobs 2]

Recorded results: docs/benchmarks.md, "Speed of the stages".
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def toy_spectra(n, n_pixels, seed, n_lines=300, chunk=2000):
    rng = np.random.default_rng(seed)
    lines = np.random.default_rng(1)
    centres = lines.uniform(0, n_pixels, n_lines)
    base = lines.uniform(0.05, 0.6, n_lines)
    sens = lines.normal(0, 1, (n_lines, 2))
    x = np.arange(n_pixels)
    profiles = np.exp(-0.5 * ((x[None, :] - centres[:, None]) / 2.5) ** 2).astype(np.float32)
    flux = np.empty((n, n_pixels), np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        theta = rng.uniform(-1, 1, (m, 2))
        depth = np.clip(base * np.exp(0.4 * theta @ sens.T), 0, 0.9).astype(np.float32)
        snr = np.exp(rng.uniform(np.log(10), np.log(200), m)).astype(np.float32)
        flux[i:i + m] = 1 - np.clip(depth @ profiles, 0, 0.98) + rng.standard_normal((m, n_pixels), np.float32) / snr[:, None]
    return flux


def load():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=37000)
    ap.add_argument("--new", type=int, default=2000)
    ap.add_argument("--pixels", type=int, default=8669)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    from starlabel.similarity import MapSettings, SimilarityMap

    print(f"{os.cpu_count()} CPUs; {load()}")
    t = time.perf_counter()
    flux = toy_spectra(args.n, args.pixels, seed=0)
    new = toy_spectra(args.new, args.pixels, seed=1)
    print(f"toy spectra: {args.n} + {args.new} x {args.pixels} pixels in {time.perf_counter() - t:.1f} s")

    is_train = np.random.default_rng(2).random(args.n) < 0.3
    t = time.perf_counter()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    m = SimilarityMap.fit(flux, is_train, MapSettings(n_jobs=args.jobs))
    t_map = time.perf_counter() - t
    print(f"map of {args.n} spectra: {t_map:.1f} s (target <= 300 s)   [{load()}]")
    print(m.format_summary())

    t = time.perf_counter()
    pos = m.transform(new)
    t_tr = time.perf_counter() - t
    t = time.perf_counter()
    flags = m.flag(new, positions=pos)
    t_flag = time.perf_counter() - t
    print(f"placing {args.new} new spectra: transform {t_tr:.1f} s + flags {t_flag:.1f} s = {t_tr + t_flag:.1f} s "
          f"(target <= 10 s); inner {flags['INNER'].mean():.1%}, outliers {flags['OUTLIER'].mean():.1%}   [{load()}]")


if __name__ == "__main__":
    main()
