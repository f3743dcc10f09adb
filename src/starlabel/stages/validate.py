"""`validate`: run the Sect. 5 analyses on files and write OUT_DIR for the report.

OUT_DIR after `validate(...)`:
    <analysis>.fits            one row per star / member / orbit (cuts in the header)
    <analysis>_summary.csv     the numbers (+ <analysis>_summary.meta.json: cuts and settings)
    <analysis>*.png            the figures (paper Figs. 13–18)
    validate.json              {analysis: {status, reason, files: {name: caption}, meta}} read by the report

An analysis whose input is absent (no seismic table, no ages table, no truth for `observed`) is
recorded as skipped with the reason; an analysis that fails is recorded with its error and the
others still run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..io.atomic import write_json
from ..validation import ANALYSES
from ..validation.common import read_table

log = logging.getLogger(__name__)

CAPTIONS = {
    "benchmarks": "Benchmark stars: CNN (mean over repeat spectra; bars: repeat spread) against the reference "
                  "labels; red: outer (paper Fig. 13)",
    "seismic": "log g of the catalogue and the CNN against asteroseismic log g, with residuals (paper Fig. 14)",
    "clusters": "[Mg/Fe] and [Al/Fe] against [Fe/H] with globular-cluster members coloured (paper Fig. 15)",
    "clusters_mgal": "Mg–Al anticorrelation per cluster: CNN (colour) and catalogue (black) (paper Fig. 16)",
    "discs": "Thin/thick disc: CNN [Mg/Fe] vs [Fe/H] of the low-S/N inner + outer sample (top) and of the test + "
             "inner S/N ≥ 30 sample (bottom) with the HDBSCAN populations (paper Fig. 17)",
    "orbits": "Orbital eccentricity (galpy, MWPotential2014, 5 Gyr) against CNN [Fe/H] per disc population "
              "(paper Fig. 18)",
    "ages": "Turn-off stars in the CNN Kiel diagram and their isochrone ages per disc population (Sect. 5.4)",
    "observed": "Scatter of CNN − truth per reason a star was not in training, inner/outer",
}


def _split(model_dir):
    if model_dir is None:
        return None
    from ..model.bundle import Bundle

    return Bundle(model_dir).split()


def validate(labels, catalogue, out_dir, truth=None, seismic=None, reference=None, ages=None,
                 model_dir=None, analyses=ANALYSES, cluster_cuts=None, disc_settings=None, orbit_settings=None,
                 turnoff=None) -> dict:
    """Run `analyses` (default: all) and write OUT_DIR (module docstring). Returns the validate.json dict.

    labels, catalogue, truth, seismic, reference, ages: paths or astropy Tables (None: absent).
    `model_dir` gives the train/test split (discs); `truth` the mock's truth table."""
    from ..plots import validate as P
    from ..validation.ages import TurnOffBox, ages as _ages
    from ..validation.benchmarks import benchmarks as _benchmarks
    from ..validation.clusters import ClusterCuts, clusters as _clusters
    from ..validation.discs import DiscSettings, discs as _discs
    from ..validation.observed import observed as _observed
    from ..validation.orbits import OrbitSettings, orbits as _orbits
    from ..validation.seismic import seismic as _seismic

    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown validation analysis {unknown}; choose from {ANALYSES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lab = read_table(labels, "labels table")
    cat = read_table(catalogue, "catalogue")
    tru = read_table(truth, "truth table") if truth is not None else None
    populations = None
    results: dict = {}

    def run(name, fn, needs=()):
        absent = [what for what, v in needs if v is None]
        if absent:
            results[name] = {"status": "skipped", "reason": f"no {', '.join(absent)} given"}
            log.info("[validate] %s: skipped (no %s)", name, ", ".join(absent))
            return None
        try:
            v = fn()
        except Exception as e:  # one analysis must not cost the others
            log.exception("validate %s failed", name)
            results[name] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
            log.warning("[validate] %s: FAILED: %s: %s", name, type(e).__name__, e)
            return None
        files = {p.name: f"{name} table" for p in v.write(out).values()}
        for k, fig_fn in enumerate(P.FIGURES[name]):
            key = name if k == 0 else f"{name}_mgal"
            args = (v, lab) if fig_fn in (P.clusters_figure, P.ages_figure) else (v,)
            files[P.save(fig_fn(*args), out / f"{key}.png").name] = CAPTIONS[key]
        results[name] = {"status": "done", "files": files, "meta": {k: _plain(x) for k, x in v.meta.items()}}
        log.info("[validate] %s: %d rows → %s", name, len(v.table), out)
        return v

    if "benchmarks" in analyses:
        run("benchmarks", lambda: _benchmarks(lab, cat, read_table(reference, "reference table")
                                                          if reference is not None else None))
    if "seismic" in analyses:
        run("seismic", lambda: _seismic(lab, cat, read_table(seismic, "seismic table")),
            [("seismic table", seismic)])
    if "clusters" in analyses:
        run("clusters", lambda: _clusters(lab, cat, cuts=cluster_cuts or ClusterCuts(), truth=tru))
    if {"discs", "orbits", "ages"} & set(analyses):
        d = run("discs", lambda: _discs(lab, cat, _split(model_dir), tru, disc_settings or DiscSettings()))
        populations = d.table if d is not None else None
    if "orbits" in analyses:
        run("orbits", lambda: _orbits(lab, cat, populations, orbit_settings or OrbitSettings()))
    if "ages" in analyses:
        run("ages", lambda: _ages(lab, cat, read_table(ages, "ages table"), populations,
                                       turnoff or TurnOffBox()), [("ages table", ages)])
    if "observed" in analyses:
        run("observed", lambda: _observed(lab, cat, tru), [("truth table", truth)])
    write_json(out / "validate.json", results, indent=1, default=str, ensure_ascii=False)
    return results


def _plain(x):
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (tuple, list)):
        return [_plain(i) for i in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x
