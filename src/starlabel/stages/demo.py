"""`demo`: the whole pipeline on the embedded mock Gaia-ESO survey, end to end.

synth → prepare → select → map (outliers) → select without outliers → train → calibrate (against the
mock's truth, which stands in for a precise reference such as benchmark stars) → predict → PCA+ridge
baseline → evaluate → validate (Sect. 5) → explain → report. Every stage writes its own file into
RUN_DIR (the layout `starlabel report` reads), and a stage whose output already exists is skipped, so
an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import json
import time
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..io.atomic import atomic_path, write_json
from ..io.run_settings import check_or_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPreset:
    n_stars: int
    train_preset: str
    runs: int
    keep: int
    explain_spectra: int


DEMO_PRESETS = {
    # 1–2 minutes on 2 cores (see README)
    "quick": DemoPreset(n_stars=3000, train_preset="quick", runs=3, keep=2, explain_spectra=300),
    # the paper's scale: 35 000 mock stars give ≈ 14 500 training candidates (the paper had
    # 14 696), paper architecture, best 8 of 10 runs (about 2 hours on 2 cores; see README)
    "paper": DemoPreset(n_stars=35000, train_preset="paper", runs=10, keep=8, explain_spectra=1000),
}

CARRY = ("SET", "SNR", "GES_FLD", "TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE")


def _step(name: str, path: Path) -> bool:
    """Announce a stage; False (skip it) when its output already exists from an earlier run."""
    if path.exists():
        log.info(f"[demo] {name}: {path} exists, skipped")
        return False
    log.info(f"[demo] {name} …")
    return True


def baseline_predictions(sets_path, model_dir, labels, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA + ridge fitted on exactly the ensemble's training split: (test rows of SETS.h5, (N, L) labels)."""
    from ..baseline import fit_pca_ridge, predict_pca_ridge
    from ..io.dataset import Dataset
    from ..labels import label_matrix
    from ..model.bundle import Bundle

    ds = Dataset(sets_path)
    split = Bundle(model_dir).split()
    cname = np.asarray(ds.catalogue["CNAME"]).astype(str)
    train_rows = np.flatnonzero(np.isin(cname, split["train"]))
    test_rows = np.flatnonzero(np.isin(cname, split["test"]))
    y_train = label_matrix(ds.catalogue[train_rows], labels)
    ok = np.isfinite(y_train).all(1)
    model = fit_pca_ridge(ds.read(train_rows[ok]), y_train[ok], seed=seed)
    return test_rows, predict_pca_ridge(model, ds.read(test_rows))


def baseline_metrics(sets_path, model_dir, truth_path, labels, seed: int = 0, predictions=None) -> Table:
    """Bias and scatter of the PCA + ridge baseline on the ensemble's test set
    (`predictions`: the output of `baseline_predictions`, if already computed)."""
    from ..evaluation.metrics import bias_scatter
    from ..io.dataset import Dataset
    from ..io.tables import index_of
    from ..labels import label_matrix

    ds = Dataset(sets_path)
    cname = np.asarray(ds.catalogue["CNAME"]).astype(str)
    test_rows, pred = predictions or baseline_predictions(sets_path, model_dir, labels, seed)
    refs = {"catalogue": label_matrix(ds.catalogue[test_rows], labels)}
    if truth_path is not None and Path(truth_path).exists():
        truth = Table.read(truth_path)
        idx = index_of(cname[test_rows], np.asarray(truth["CNAME"]).astype(str))
        t = label_matrix(truth, labels)[np.maximum(idx, 0)]
        t[idx < 0] = np.nan
        refs["truth"] = t
    rows = []
    for ref_name, ref in refs.items():
        for k, name in enumerate(labels):
            b, s, n = bias_scatter(pred[:, k], ref[:, k])
            rows.append(("test", ref_name, name, n, b, s))
    return Table(rows=rows, names=("set", "reference", "label", "n", "bias", "scatter"),
                 dtype=(str, str, str, int, float, float))


NOISE_DRAWS = 4  # noisy copies per spectrum and network for E_<LABEL>_NOISE / _TOTAL


def summary_table(metrics: Table, baseline: Table | None) -> Table:
    """Bias and scatter of the ensemble per set, reference and label (+ the baseline on the test set)."""
    within = ["within_1sigma", "within_2sigma", "within_1sigma_total", "within_2sigma_total"]
    out = Table(metrics[["set", "reference", "label", "n", "bias", "scatter", *within]])
    out["method"] = "cnn"
    if baseline is not None:
        b = Table(baseline)
        for c in within:
            b[c] = np.nan
        b["method"] = "pca+ridge"
        from astropy.table import vstack

        out = vstack([out, b[out.colnames]])
    return out


def format_summary(table: Table) -> str:
    """The summary as aligned text; σt columns (spread ⊕ noise ⊕ model error) when predict made them."""
    total = "within_1sigma_total" in table.colnames and bool(np.isfinite(table["within_1sigma_total"]).any())
    lines = [f"{'set':<16}{'reference':<11}{'method':<11}{'label':<7}{'n':>6}{'bias':>10}{'scatter':>10}"
             f"{'in 1σ':>7}{'in 2σ':>7}" + (f"{'in 1σt':>8}{'in 2σt':>8}" if total else "")]
    cols = ("within_1sigma", "within_2sigma") + (("within_1sigma_total", "within_2sigma_total") if total else ())
    widths = [8 if "total" in c else 7 for c in cols]
    for r in table:
        fmt = "{:10.1f}" if r["label"] == "TEFF" else "{:10.3f}"
        w = "".join(f"{r[c]:{k}.2f}" if np.isfinite(r[c]) else " " * k for c, k in zip(cols, widths))
        lines.append(f"{r['set']:<16}{r['reference']:<11}{r['method']:<11}{r['label']:<7}{r['n']:>6}"
                     + fmt.format(r["bias"]) + fmt.format(r["scatter"]) + w)
    return "\n".join(lines)


def _settings_of_older_run(out: Path) -> dict | None:
    """The settings a run made before demo_settings.json existed recorded in its demo.json."""
    if not (out / "demo.json").exists():
        return None
    s = json.loads((out / "demo.json").read_text()).get("settings", {})
    return {k: s.get(k) for k in ("preset", "seed", "n_stars", "runs", "keep", "max_epochs")} | {"engine": "onelayer"}


def _note_engine_of_older_run(path: Path) -> None:
    """Runs made before the emulator engine existed rendered their survey with the one-layer engine:
    say so in their settings file, so that they resume with `--engine onelayer` (and only with it)."""
    if path.exists():
        old = json.loads(path.read_text())
        if "engine" not in old:
            write_json(path, old | {"engine": "onelayer"}, indent=1)


def demo(out="demo_run", preset: str = "quick", seed: int = 0, n_stars: int | None = None,
         runs: int | None = None, keep: int | None = None, workers: int = 2, max_epochs: int | None = None,
         progress: bool = True, engine: str = "emulator") -> Path:
    """Run the pipeline into `out`; returns the path of the HTML report. `engine`: the mock survey's
    synthesis engine (`mock.survey.make_survey`)."""
    from ..evaluation.metrics import join_run, metrics_table, read_map_flags
    from ..io.dataset import Dataset
    from ..labels import DEFAULT_LABELS
    from ..model.bundle import Bundle
    from ..plots.maps import write_map_figures
    from ..mock.survey import make_survey
    from .calibrate import calibrate
    from .evaluate import evaluate
    from .explain import explain
    from .map import map as map_spectra
    from .map import outlier_cnames
    from .predict import predict
    from .prepare import PrepareSettings, prepare
    from .report import report
    from .select import select
    from .train import train

    if preset not in DEMO_PRESETS:
        raise ValueError(f"unknown demo preset {preset!r}; choose one of {sorted(DEMO_PRESETS)}")
    p = DEMO_PRESETS[preset]
    n_stars, runs, keep = n_stars or p.n_stars, runs or p.runs, keep or p.keep
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _note_engine_of_older_run(out / "demo_settings.json")
    check_or_record(out / "demo_settings.json",
                    dict(preset=preset, seed=seed, n_stars=n_stars, runs=runs, keep=keep, max_epochs=max_epochs,
                         engine=engine), out, fallback=lambda: _settings_of_older_run(out))
    survey = out / "survey"
    timings = {}
    t0 = time.perf_counter()

    def lap(name):
        timings[name] = round(time.perf_counter() - t0 - sum(timings.values()), 1)

    if _step(f"synth survey of {n_stars} stars", survey / "truth.fits"):
        make_survey(survey, n_stars, seed=seed, workers=workers, progress=progress, engine_name=engine)
    lap("synth")
    if _step("prepare", out / "dataset.h5"):
        prepare(survey / "catalogue.fits", survey / "spectra", out / "dataset.h5",
                PrepareSettings(workers=workers), progress=progress)
    lap("prepare")
    if _step("select (training candidates)", out / "candidates.h5"):
        select(out / "dataset.h5", out / "candidates.h5")
    if _step("similarity map", out / "map.h5"):
        m = map_spectra(out / "candidates.h5", out / "map.h5", seed=seed, progress=progress)
        cand = Dataset(out / "candidates.h5")
        write_map_figures(m, out / "map_figures", "map", read=cand.read, wavelength=cand.wavelength)
    lap("map")
    if _step("select without map outliers", out / "sets.h5"):
        select(out / "dataset.h5", out / "sets.h5", exclude_cnames=outlier_cnames(out / "map.h5"))
    lap("select")
    if _step(f"train ({p.train_preset} preset, best {keep} of {runs} runs)", out / "model" / "manifest.json"):
        train(out / "sets.h5", out / "model", labels=DEFAULT_LABELS, runs=runs, keep=keep,
              preset=p.train_preset, seed=seed, progress=progress,
              **({"max_epochs": max_epochs} if max_epochs else {}))
    lap("train")
    if _step("calibrate (the mock's truth as the reference)", out / "model" / "calibration.json"):
        calibrate(out / "model", out / "sets.h5", reference=survey / "truth.fits", noise_draws=NOISE_DRAWS,
                  seed=seed, progress=progress)
    lap("calibrate")
    if _step("predict", out / "labels.fits"):
        predict(out / "model", out / "sets.h5", out / "labels.fits", carry=CARRY,
                map_path=out / "map.h5", noise_draws=NOISE_DRAWS, seed=seed, progress=progress)
    lap("predict")
    if _step("evaluate", out / "eval" / "index.json"):
        evaluate(out / "model", out / "sets.h5", out / "labels.fits", out / "eval", map_path=out / "map.h5",
                 truth_path=survey / "truth.fits")
    lap("evaluate")
    if _step("validate", out / "validate" / "validate.json"):
        from .validate import validate as validate_all

        extra = {k: survey / f for k, f in (("seismic", "seismic.fits"), ("ages", "ages_mock.fits"))
                 if (survey / f).exists()}
        validate_all(out / "labels.fits", survey / "catalogue.fits", out / "validate", truth=survey / "truth.fits",
                     model_dir=out / "model", **extra)
    lap("validate")
    if _step("explain", out / "explain" / "explain.h5"):
        explain(out / "model", out / "sets.h5", out / "explain" / "explain.h5", which="test",
                n_max=p.explain_spectra, seed=seed, progress=progress)
    lap("explain")

    joined = join_run(Dataset(out / "sets.h5").catalogue,
                      Table.read(out / "labels.fits"), Bundle(out / "model").split(),
                      read_map_flags(out / "map.h5"), Table.read(survey / "truth.fits"))
    baseline = baseline_metrics(out / "sets.h5", out / "model", survey / "truth.fits", DEFAULT_LABELS, seed)
    summary = summary_table(metrics_table(joined), baseline)
    with atomic_path(out / "summary.csv") as tmp:
        summary.write(tmp, format="ascii.csv")
    lap("summary")
    log.info("\n" + format_summary(summary[summary["set"] != "train"]))
    path = report(out, out / "report.html")
    lap("report")
    timings["total"] = round(time.perf_counter() - t0, 1)
    settings = dict(asdict(p), n_stars=n_stars, runs=runs, keep=keep, seed=seed, preset=preset,
                    max_epochs=max_epochs, engine=engine)
    write_json(out / "demo.json", {"settings": settings, "timings_s": timings}, indent=2)
    log.info(f"\n[demo] stage timings (s): {timings}")
    log.info(f"[demo] report: {path.resolve()}")
    return path

