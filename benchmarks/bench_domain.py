"""The domain score of `predict --model-spectra` (issue 11 item 5): χ² on mock spectra, the real Sun, a real
GES star, and what it costs.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_domain.py RUN_DIR [--n 600] [--engines onelayer,emulator]

RUN_DIR is a `starlabel demo` output (model/, sets.h5, survey/truth.fits), i.e. an ensemble trained on the
mock survey. Prints, with the date and the machine load:

1. mock spectra (only the mock survey, made by the engine RUN_DIR/survey/synth.json names): reduced χ²
   percentiles of the model's test stars and of the observed set (clean vs pathological stars) at the
   predicted labels and, for comparison, at the true labels; the flagged fractions at thresholds 2, 3, 5;
   σ from the dataset's /error (when `prepare` wrote one) and, for comparison, from DER_SNR; flagged
   clean stars by S/N; the cost per spectrum of the model spectra + χ² (the part `--model-spectra` adds
   to predict) per engine;
2. the real Sun (UVES HR10 + SAO2010 HR21 at GIRAFFE R, `mock.sim_to_real.real_sun`), noiseless (σ from
   DER_SNR) and at S/N 100 (σ: the injected noise as /error), at its true labels and at the labels the
   ensemble gives it: CHI2_HR10, CHI2_HR21 per engine;
3. the real GES HR21 product in ../shared/data/spectra/ges_giraffe at its iDR6 labels (HR21-only grid),
   through `prepare` as a user would run it: CHI2_HR21 per engine, with σ from its prepared /error and
   from DER_SNR.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PCT = (5, 50, 95, 99)


def pct(x) -> str:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if not x.size:
        return "no data"
    return " / ".join(f"{v:.2f}" for v in np.percentile(x, PCT)) + f" (max {x.max():.1f}, n {x.size})"


def flagged(x, thresholds=(2, 3, 5)) -> str:
    x = np.asarray(x, float)
    return ", ".join(f"> {t}: {np.mean(~(x <= t)):.1%}" for t in thresholds)


def mock_part(run: Path, n: int, engines, tmp: Path) -> None:
    from starlabel.evaluation import domain
    from starlabel.io.dataset import Dataset, write_dataset
    from starlabel.io.tables import index_of
    from starlabel.evaluation.domain import DEFAULT_THRESHOLD as DEFAULT
    from starlabel.model.bundle import Bundle
    from starlabel.stages.predict import predict

    ds = Dataset(run / "sets.h5")
    cn = np.asarray(ds.catalogue["CNAME"]).astype(str)
    test = np.flatnonzero(np.isin(cn, Bundle(run / "model").split()["test"]))
    observed = np.flatnonzero(np.asarray(ds.catalogue["SET"]).astype(str) == "observed")
    rng = np.random.default_rng(0)
    rows = np.unique(np.concatenate([rng.choice(test, min(n // 2, test.size), replace=False),
                                     rng.choice(observed, min(n // 2, observed.size), replace=False)]))
    truth = Table.read(run / "survey" / "truth.fits")
    t = truth[index_of(cn[rows], np.asarray(truth["CNAME"]).astype(str))]
    path = np.asarray(t["PATHOLOGICAL"], bool)
    is_test = np.isin(rows, test)
    import json

    synth = json.loads((run / "survey" / "synth.json").read_text())
    print(f"\nthe mock survey: {synth.get('n_stars')} stars, engine {synth.get('engine', 'onelayer')}; "
          f"{run / 'sets.h5'} {'has' if ds.has_error else 'has no'} /error")
    flux, mask = ds.read(rows, mask=True)
    error = ds.read_error(rows)
    sub = {"/error" if error is not None else "DER_SNR": tmp / "rows.h5"}
    write_dataset(tmp / "rows.h5", ds.grid, flux, mask, ds.catalogue[rows], settings=ds.settings, error=error)
    if error is not None:
        write_dataset(tmp / "rows_noerr.h5", ds.grid, flux, mask, ds.catalogue[rows], settings=ds.settings)
        sub["DER_SNR"] = tmp / "rows_noerr.h5"
    snr = np.asarray(ds.catalogue["SNR"], float)[rows]
    t0 = time.perf_counter()
    pred = Table.read(predict(run / "model", ds.path, tmp / "labels.fits", rows=rows, progress=False))
    t_predict = time.perf_counter() - t0
    names = [c[:-4] for c in pred.colnames if c.endswith("_CNN") and not c.startswith("E_")]
    by_pred = domain.label_table(pred, names, ds.catalogue[rows])
    by_truth = Table({k: np.asarray(t[k], float) for k in ("TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE", "ALPHA_FE")})
    by_truth["VSINI"] = np.asarray(ds.catalogue["VSINI"], float)[rows]
    print(f"\n1. mock spectra ({run}): {rows.size} spectra, {is_test.sum()} model test stars, "
          f"{(~is_test).sum()} observed-set stars ({(path & ~is_test).sum()} pathological)")
    print(f"   predict alone: {1e3 * t_predict / rows.size:.1f} ms per spectrum; percentiles {PCT} of DOMAIN_CHI2")
    for engine, sigma in [(e, s) for e in engines for s in sub]:
        for what, lab in (("predicted labels", by_pred), ("true labels", by_truth)):
            t0 = time.perf_counter()
            c = domain.domain_check(sub[sigma], lab, np.arange(rows.size), tmp / f"m_{engine}.h5", engine=engine)
            dt = time.perf_counter() - t0
            x = np.asarray(c["DOMAIN_CHI2"], float)
            print(f"   {engine:8s} {what:16s} σ {sigma}")
            print(f"   {'':8s} {'':16s} test stars: {pct(x[is_test])}; flagged {flagged(x[is_test])}")
            print(f"   {'':8s} {'':16s} observed clean: {pct(x[~is_test & ~path])}; flagged "
                  f"{flagged(x[~is_test & ~path])}")
            print(f"   {'':8s} {'':16s} observed pathological: flagged {flagged(x[~is_test & path])}")
            defects = np.asarray(t["DEFECTS"]).astype(str)
            for kind in ("emission", "bad_norm", "fast_rotator"):
                k = path & (np.char.find(defects, kind) >= 0)
                if k.any():
                    print(f"   {'':8s} {'':16s} pathological {kind}: n {k.sum()}, flagged {flagged(x[k])}")
            if what == "predicted labels":  # are the flagged clean stars the badly labelled ones?
                off = ~path & ~(x <= DEFAULT)
                d = {k: np.abs(np.asarray(by_pred[k], float) - np.asarray(by_truth[k], float))
                     for k in ("TEFF", "LOGG", "FE_H")}
                print(f"   {'':8s} {'':16s} clean flagged at > {DEFAULT:g}: {off.sum()} ({np.isnan(x[off]).sum()} without "
                      f"a model: labels outside the engine's range), median |dTEFF| / |dLOGG| / "
                      f"|dFE_H| {' / '.join(f'{np.nanmedian(v[off]):.3g}' for v in d.values())} against "
                      f"{' / '.join(f'{np.nanmedian(v[~path]):.3g}' for v in d.values())} for all clean")
            for s in ds.grid.names:
                print(f"   {'':8s} {'':16s} CHI2_{s} test stars: {pct(np.asarray(c[f'CHI2_{s}'])[is_test])}")
            clean = ~path
            for lo, hi in ((10, 30), (30, 50), (50, 100), (100, np.inf)):
                b = clean & (snr >= lo) & (snr < hi)
                if b.any():
                    print(f"   {'':8s} {'':16s} clean S/N {lo}-{hi}: n {b.sum()}, median {np.nanmedian(x[b]):.2f}, "
                          f"flagged {flagged(x[b])}")
            print(f"   {'':8s} {'':16s} cost {1e3 * dt / rows.size:.1f} ms per spectrum (model + chi2 + write)")


def sun_part(run: Path, engines, tmp: Path) -> None:
    from starlabel.evaluation import domain
    from starlabel.grid import Grid
    from starlabel.io.dataset import write_dataset
    from starlabel.mock import sim_to_real as s2r
    from starlabel.model.ensemble import Ensemble

    grid = Grid.default()
    real = s2r.real_sun(SHARED, grid)
    flux = np.concatenate([real[s] for s in grid.names])
    ens = Ensemble.load(run / "model")
    p = ens.predict(np.nan_to_num(flux, nan=1.0)[None].astype("f4"))
    predicted = {n: float(v) for n, v in zip(ens.labels.names, p.mean[0])}
    print(f"\n2. the real Sun; the ensemble in {run / 'model'} labels it "
          + ", ".join(f"{k} {v:.3g}" for k, v in predicted.items()))
    rng = np.random.default_rng(1)
    for snr in (None, 100):
        f = flux if snr is None else flux + rng.normal(0, 1, flux.size) * np.sqrt(np.clip(flux, 0.05, None)) / snr
        mask = (~np.isfinite(f)).astype("u1")[None] * 2
        e = None if snr is None else (np.sqrt(np.clip(f, 0.05, None)) / snr)[None].astype("f4")
        write_dataset(tmp / "sun.h5", grid, np.nan_to_num(f, nan=1.0)[None].astype("f4"), mask,
                      Table({"CNAME": ["SUN"]}), error=e)
        for engine in engines:
            for what, lab in (("true labels", dict(s2r.SUN)), ("predicted", predicted)):
                t = Table({k.upper(): [v] for k, v in lab.items() if k in ("teff", "logg", "feh", "mg_fe", "al_fe")}
                          if what == "true labels" else {k: [v] for k, v in lab.items()})
                if "FEH" in t.colnames:
                    t.rename_column("FEH", "FE_H")
                t["VSINI"] = [s2r.SUN_VSINI]
                c = domain.domain_check(tmp / "sun.h5", t, [0], tmp / "sun_m.h5", engine=engine)
                print(f"   S/N {snr or 'noiseless':>9} σ {'/error' if snr else 'DER_SNR':7s} {engine:8s} {what:12s} CHI2_HR10 {c['CHI2_HR10'][0]:8.1f}  "
                      f"CHI2_HR21 {c['CHI2_HR21'][0]:8.1f}  flagged {bool(c['DOMAIN_FLAG'][0])}")


def ges_part(engines, tmp: Path) -> None:
    from starlabel.evaluation import domain
    from starlabel.grid import HR21, Grid
    from starlabel.io.dataset import Dataset, write_dataset
    from starlabel.mock import sim_to_real as s2r
    from starlabel.stages.prepare import PrepareSettings, prepare

    grid = Grid((HR21,))
    lab = Table({"TEFF": [s2r.GES_STAR["teff"]], "LOGG": [s2r.GES_STAR["logg"]], "FE_H": [s2r.GES_STAR["feh"]],
                 "VSINI": [3.0]})
    # the file through `prepare`, as a user would run it (normalised product, velclass VEL, its error → /error)
    cname = s2r.GES_FILE.split("_")[2]
    prepare(Table({"CNAME": [cname], "VRAD": [np.nan]}), SHARED / "spectra" / "ges_giraffe", tmp / "ges_p.h5",
            PrepareSettings(grid=grid), progress=False)
    ds = Dataset(tmp / "ges_p.h5")
    flux, mask = ds.read(mask=True)
    error = ds.read_error()
    ok = (mask[0] == 0) & np.isfinite(error[0])
    write_dataset(tmp / "ges_noerr.h5", grid, flux, mask, ds.catalogue)
    print(f"\n3. the GES HR21 star ({s2r.GES_FILE}) at its iDR6 labels 6203 K / 4.09 / +0.15, v sin i 3 km/s, "
          f"prepared; median flux / error {np.median(flux[0][ok] / error[0][ok]):.1f} per 0.1-Å grid pixel")
    for sigma, path in (("/error", ds.path), ("DER_SNR", tmp / "ges_noerr.h5")):
        for engine in engines:
            c = domain.domain_check(path, lab, [0], tmp / "ges_m.h5", engine=engine)
            print(f"   σ from {sigma:8s} {engine:8s} CHI2_HR21 {c['CHI2_HR21'][0]:7.2f}  "
                  f"flagged {bool(c['DOMAIN_FLAG'][0])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=600, help="mock spectra (half test stars, half observed set)")
    ap.add_argument("--engines", default="onelayer,emulator")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: mock, sun, ges")
    a = ap.parse_args()
    engines = a.engines.split(",")
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "| load", os.getloadavg())
    import torch

    torch.set_num_threads(1)
    from starlabel.evaluation.domain import DEFAULT_THRESHOLD
    from starlabel.mock.emulator import Emulator
    from starlabel.mock.model_spectra import default_engine

    emu = Emulator.load()
    print(f"threshold {DEFAULT_THRESHOLD}; shipped emulator: {emu.provenance.get('grid_points')} grid points "
          f"(built {emu.provenance.get('built')}); default engine: {default_engine(emu)}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "mock" not in a.skip:
            mock_part(a.run, a.n, engines, tmp)
        if "sun" not in a.skip:
            sun_part(a.run, engines, tmp)
        if "ges" not in a.skip:
            ges_part(engines, tmp)
    print("\nload at the end", os.getloadavg())


if __name__ == "__main__":
    main()
