"""Timing of `validate orbits`: galpy MWPotential2014, 5 Gyr, one vectorised Orbit array, C integrator.

    python benchmarks/bench_orbits.py [--n 10000] [--steps 1001] [--gyr 5] [--cores 1] [--chunk 2500]

Draws a mock Milky Way (starlabel.mock.survey.plan_survey: mock catalogue astrometry with its
errors), keeps stars with parallax > 0 and σϖ/ϖ ≤ 0.2 as `validate orbits` does, takes the first
N and integrates them with `starlabel.validate.eccentricities`. Prints the date, the machine load
(`uptime`) before and after, the wall time and the time per orbit. Target (issue 13): 10 000
stars in ≤ 5 min on the 2-core development machine. Figures measured on the mock survey only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import time

import numpy as np


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--steps", type=int, default=1001)
    p.add_argument("--gyr", type=float, default=5.0)
    p.add_argument("--cores", type=int, default=1)
    p.add_argument("--chunk", type=int, default=2500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtol", type=float, default=1e-6, help="dop853_c relative tolerance (0: galpy's default)")
    args = p.parse_args(argv)

    from starlabel.mock.survey import plan_survey
    from starlabel.validation import OrbitSettings, eccentricities
    from starlabel.validation.common import fcol

    cols, have, k = [], 0, 0
    while have < args.n:  # enough stars that pass the parallax cut
        _, cat = plan_survey(max(3000, int(1.6 * (args.n - have))), seed=args.seed + k, benchmark_epochs=0)
        plx, e = fcol(cat, "PARALLAX"), fcol(cat, "E_PARALLAX")
        ok = (plx > 0) & (e / plx <= 0.2) & np.char.startswith(np.asarray(cat["GES_TYPE"]).astype(str), "GE_MW")
        cols.append(np.column_stack([fcol(cat, c)[ok] for c in ("RA", "DEC", "PARALLAX", "PMRA", "PMDEC", "VRAD")]))
        have += int(ok.sum())
        k += 1
    x = np.vstack(cols)[: args.n]
    settings = OrbitSettings(integrate_gyr=args.gyr, n_steps=args.steps, numcores=args.cores, chunk=args.chunk,
                             rtol=args.rtol or None, atol=args.rtol * 1e-2 if args.rtol else None)
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; cpus: {os.cpu_count()}")
    print(f"before: {uptime()}")
    t0 = time.perf_counter()
    ecc = eccentricities(*x.T, settings=settings)
    dt = time.perf_counter() - t0
    print(f"after:  {uptime()}")
    print(f"{len(x)} orbits, {args.gyr:g} Gyr, {args.steps} stored steps, method {settings.method}, "
          f"numcores {args.cores}, chunk {args.chunk}, rtol {settings.rtol}: {dt:.1f} s "
          f"({1000 * dt / len(x):.1f} ms per orbit); "
          f"extrapolated to 10 000 stars: {dt / len(x) * 1e4 / 60:.1f} min")
    print(f"eccentricity: median {np.nanmedian(ecc):.3f}, finite {np.isfinite(ecc).mean():.1%}")


if __name__ == "__main__":
    main()
