"""A resumable PySME training grid over the mock survey's label space.

    python -m starlabel.mock.pysme_grid --out DIR --n N --seed S --workers W

Label points: 80 % are the mock survey's own stars (`population.draw_population`: its Kiel
diagram, chemistry and α) jittered (σ = 120 K, 0.15 dex in log g, 0.05 dex in the abundances) so
that the emulator also sees the neighbourhood of the population, 20 % fill a broad box (Teff
3800–7000 K, log g from a Teff-dependent lower edge to 5, [Fe/H] −2.8…+0.5, [Mg/Fe] −0.3…+0.7,
[Al/Fe] −0.5…+1.3, [α/Fe] −0.2…+0.5); v_mic = the mock's relation ± 0.25 km/s. The order is
random, so any finished prefix of the list is a fair subsample.

Cache: one `DIR/<key>.npz` per point, key = hash(labels, settings, line-list sha256) (see
`pysme_engine.cache_key`), written atomically; existing files are skipped, so a killed run simply
continues. A point that fails is logged and skipped (and retried on the next run).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path

log = logging.getLogger(__name__)

BOUNDS = {"teff": (3800.0, 7000.0), "logg": (0.5, 5.0), "feh": (-2.8, 0.5), "mg_fe": (-0.3, 0.7),
          "al_fe": (-0.5, 1.3), "alpha_fe": (-0.2, 0.5), "vmic": (0.5, 2.8)}


def sample_labels(n: int, seed: int = 0) -> list[dict]:
    """`n` label points (dicts with pysme_engine.LABELS keys), deterministic in `seed`."""
    from .engine import microturbulence
    from .population import draw_population

    rng = np.random.default_rng([seed, 11])
    n_pop = int(round(0.8 * n))
    pop = draw_population(max(n_pop, 1), seed=seed, n_benchmarks=0)[:n_pop]
    lab = {
        "teff": np.asarray(pop["TEFF"], float) + rng.normal(0, 120, n_pop),
        "logg": np.asarray(pop["LOGG"], float) + rng.normal(0, 0.15, n_pop),
        "feh": np.asarray(pop["FE_H"], float) + rng.normal(0, 0.05, n_pop),
        "mg_fe": np.asarray(pop["MG_FE"], float) + rng.normal(0, 0.05, n_pop),
        "al_fe": np.asarray(pop["AL_FE"], float) + rng.normal(0, 0.05, n_pop),
        "alpha_fe": np.asarray(pop["ALPHA_FE"], float) + rng.normal(0, 0.05, n_pop),
    }
    n_box = n - n_pop
    teff = rng.uniform(*BOUNDS["teff"], n_box)
    g_lo = np.clip(0.5 + 2.0 * (teff - 4200) / 2800, 0.5, 2.5)  # hot supergiants are not in the survey
    box = {"teff": teff, "logg": g_lo + rng.random(n_box) * (5.0 - g_lo)}
    for k in ("feh", "mg_fe", "al_fe", "alpha_fe"):
        box[k] = rng.uniform(*BOUNDS[k], n_box)
    lab = {k: np.concatenate([lab[k], box[k]]) for k in lab}
    lab["vmic"] = microturbulence(lab["teff"], lab["logg"]) + rng.normal(0, 0.25, n)
    for k, (lo, hi) in BOUNDS.items():
        lab[k] = np.clip(lab[k], lo, hi)
    order = rng.permutation(n)
    return [{k: round(float(lab[k][i]), 4) for k in lab} for i in order]


def cache_path(out: Path, labels: dict, settings_d: dict) -> Path:
    from .pysme_engine import cache_key

    return Path(out) / f"{cache_key(labels, settings_d)}.npz"


def write_point(path: Path, labels: dict, flux: dict, settings_d: dict, seconds: float) -> None:
    """One cache file: flux per setup (float32) + labels, settings and timing as JSON."""
    meta = {"labels": labels, "settings": settings_d, "seconds": round(seconds, 2),
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)),
                                **{f"flux_{k}": np.asarray(v, np.float32) for k, v in flux.items()})


def read_point(path: Path) -> tuple[dict, dict]:
    """(meta, {setup: flux}) of one cache file."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return meta, {k[5:]: z[k] for k in z.files if k.startswith("flux_")}


def _one(args):
    labels, settings, settings_d, out = args
    from .pysme_engine import synthesize_pysme

    t = time.perf_counter()
    try:
        flux = synthesize_pysme(labels, settings)
    except Exception as e:  # one bad point never stops the grid
        return labels, None, f"{type(e).__name__}: {e}", time.perf_counter() - t
    dt = time.perf_counter() - t
    write_point(cache_path(out, labels, settings_d), labels, flux, settings_d, dt)
    return labels, True, "", dt


def build_grid(points: list[dict], out: str | Path, settings=None, workers: int = 1, synth=None,
               settings_d: dict | None = None) -> dict:
    """Synthesise every point whose cache file is missing; returns counts {done, skipped, failed}.

    `synth(labels, settings) -> {setup: flux}` replaces PySME (tests inject a fake one).
    """
    from . import pysme_engine as pe

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings or pe.PysmeSettings()
    settings_d = settings_d if settings_d is not None else pe.settings_dict(settings)
    todo = [p for p in points if not cache_path(out, p, settings_d).exists()]
    counts = {"done": 0, "skipped": len(points) - len(todo), "failed": 0}
    (out / "settings.json").write_text(json.dumps(settings_d, indent=1, default=str))
    log.info("%d points, %d already cached, %d to synthesise with %d worker(s) into %s",
             len(points), counts["skipped"], len(todo), workers, out)
    t0 = time.time()
    jobs = [(p, settings, settings_d, out) for p in todo]
    if synth is not None:
        def run(job):
            t = time.perf_counter()
            try:
                flux = synth(job[0], settings)
            except Exception as e:
                return job[0], None, f"{type(e).__name__}: {e}", time.perf_counter() - t
            write_point(cache_path(out, job[0], settings_d), job[0], flux, settings_d, time.perf_counter() - t)
            return job[0], True, "", time.perf_counter() - t
        results = map(run, jobs)
    elif workers <= 1:
        results = map(_one, jobs)
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_one, jobs)
    for k, (lab, ok, err, dt) in enumerate(results, 1):
        if ok:
            counts["done"] += 1
        else:
            counts["failed"] += 1
            log.warning("point %s failed, skipped: %s", json.dumps(lab), err)
        rate = (time.time() - t0) / k
        log.info("[%d/%d] %s %.0f K %.2f %+.2f in %.1f s (done %d, failed %d, cached before %d; %.1f s/point, "
                 "%.1f h left)", k, len(todo), "ok" if ok else "FAILED", lab["teff"], lab["logg"], lab["feh"], dt,
                 counts["done"], counts["failed"], counts["skipped"], rate, rate * (len(todo) - k) / 3600)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m starlabel.mock.pysme_grid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="cache directory (one .npz per label point)")
    p.add_argument("--n", type=int, default=3000, help="number of label points (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--astrophysical-gf", default="", choices=["", "even", "all"],
                   help="solar-fitted log gf from the package table data/pysme_loggf_sun.ecsv: lines of the even "
                        "5-Å windows only, or all fitted lines (default: laboratory values)")
    p.add_argument("--gf-source", default="vald", choices=["vald", "linemake", "ges"],
                   help="log gf of the atomic lines: VALD's where VALD has the line, plus VALD's lines linemake lacks "
                        "(default), linemake's alone (the grids before 2026-12-01), or the Gaia-ESO line list with its "
                        "hyperfine components (ges; fetch it once with `python -m starlabel.mock.ges_lines`); "
                        "PysmeSettings.gf_source")
    p.add_argument("--molecules", action="store_true",
                   help="add the VALD molecular lines to HR21 (PysmeSettings.molecules; a different cache key)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    from .pysme_engine import PysmeSettings

    settings = PysmeSettings(astrophysical_gf=a.astrophysical_gf, molecules=a.molecules, gf_source=a.gf_source)
    counts = build_grid(sample_labels(a.n, a.seed), a.out, settings, workers=a.workers)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
