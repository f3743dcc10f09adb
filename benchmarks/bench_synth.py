"""Speed of `starlabel synth survey`: stars/s and total wall time for --n-stars stars.

    .venv/bin/python benchmarks/bench_synth.py --n-stars 2000 --workers 2 [--engine onelayer|emulator|both]

With --engine both, the CPU time per star of the two engines is measured in the same run (a ratio that
holds when the shared cores' speed drifts), and the full survey is written with the emulator.

Prints the machine load before and after (the cores may be shared) and the extrapolated
time for a 20 000-star survey (the issue asks for ≤ 5 minutes on 2 cores).
Recorded results: docs/benchmarks.md, "Speed of the stages".
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from starlabel.mock import engine
from starlabel.mock.survey import make_survey, native_wavelength


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-stars", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", choices=["onelayer", "emulator", "both"], default="onelayer")
    p.add_argument("--out", help="output directory (default: a temporary one, removed afterwards)")
    args = p.parse_args(argv)

    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()}")
    t = time.perf_counter()
    engine.line_data()
    print(f"line list load: {time.perf_counter() - t:.2f} s")
    for setup in ("HR10", "HR21"):
        w = native_wavelength(setup)
        engine.synthesize(w, 5000, 3.0, -0.3, resolution=20000)
        t = time.perf_counter()
        for _ in range(20):
            engine.synthesize(w, 5000, 3.0, -0.3, resolution=20000)
        print(f"one {setup} spectrum ({w.size} px): {(time.perf_counter() - t) / 20 * 1e3:.1f} ms")

    # CPU time per star in one process: independent of how busy the shared cores are
    engines = ["onelayer", "emulator"] if args.engine == "both" else [args.engine]
    if "emulator" in engines:
        from starlabel.mock import emulated

        emulated.load()  # once, outside the timing (≈ 1–5 s: torch import + safetensors)
    for name in engines:
        with tempfile.TemporaryDirectory() as tmp:
            n_cpu = min(200, args.n_stars)
            t = time.process_time()
            make_survey(tmp, n_cpu, seed=args.seed + 1, workers=1, progress=False, engine_name=name)
            cpu = (time.process_time() - t) / n_cpu
        print(f"{name}: CPU per star (both setups, incl. writing): {cpu * 1e3:.1f} ms "
              f"-> idle 2-core estimate for 20 000 stars: {20000 * cpu / 2 / 60:.1f} min")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        t = time.perf_counter()
        make_survey(out, args.n_stars, seed=args.seed, workers=args.workers, progress=False, engine_name=engines[-1])
        dt = time.perf_counter() - t
    rate = args.n_stars / dt
    print(f"{engines[-1]}: {args.n_stars} stars, {args.workers} workers: {dt:.1f} s total, {rate:.1f} stars/s")
    print(f"extrapolated 20 000 stars: {20000 / rate / 60:.1f} min")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
