"""The domain score of `predict --model-spectra` (issue 11 item 5): χ² on mock spectra, the real Sun, a real
GES star, and what it costs.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_domain.py RUN_DIR [--n 600] [--engines onelayer,emulator]

RUN_DIR is a `starlabel demo` output (model/, sets.h5, survey/truth.fits), i.e. an ensemble trained on the
mock survey. Prints, with the date and the machine load:

1. mock spectra (only the mock survey: the one-layer engine made them): reduced χ² percentiles of the
   model's test stars and of the observed set (clean vs pathological stars) at the predicted labels and,
   for comparison, at the true labels; the flagged fractions at thresholds 2, 3, 5; the cost per
   spectrum of the model spectra + χ² (the part `--model-spectra` adds to predict) per engine;
2. the real Sun (UVES HR10 + SAO2010 HR21 at GIRAFFE R, `mock.sim_to_real.real_sun`), noiseless and at
   S/N 100, at its true labels and at the labels the ensemble gives it: CHI2_HR10, CHI2_HR21 per engine;
3. the real GES HR21 product in ../shared/data/spectra/ges_giraffe at its iDR6 labels (HR21-only grid):
   CHI2_HR21 per engine, with σ from its own error spectrum and from DER_SNR.
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
    from starlabel.io.dataset import Dataset
    from starlabel.io.tables import index_of
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
    for engine in engines:
        for what, lab in (("predicted labels", by_pred), ("true labels", by_truth)):
            t0 = time.perf_counter()
            c = domain.domain_check(ds, lab, rows, tmp / f"m_{engine}.h5", engine=engine)
            dt = time.perf_counter() - t0
            x = np.asarray(c["DOMAIN_CHI2"], float)
            print(f"   {engine:8s} {what:16s} test stars: {pct(x[is_test])}; flagged {flagged(x[is_test])}")
            print(f"   {'':8s} {'':16s} observed clean: {pct(x[~is_test & ~path])}; flagged "
                  f"{flagged(x[~is_test & ~path])}")
            print(f"   {'':8s} {'':16s} observed pathological: flagged {flagged(x[~is_test & path])}")
            for s in ds.grid.names:
                print(f"   {'':8s} {'':16s} CHI2_{s} test stars: {pct(np.asarray(c[f'CHI2_{s}'])[is_test])}")
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
        write_dataset(tmp / "sun.h5", grid, np.nan_to_num(f, nan=1.0)[None].astype("f4"), mask,
                      Table({"CNAME": ["SUN"]}))
        for engine in engines:
            for what, lab in (("true labels", dict(s2r.SUN)), ("predicted", predicted)):
                t = Table({k.upper(): [v] for k, v in lab.items() if k in ("teff", "logg", "feh", "mg_fe", "al_fe")}
                          if what == "true labels" else {k: [v] for k, v in lab.items()})
                if "FEH" in t.colnames:
                    t.rename_column("FEH", "FE_H")
                t["VSINI"] = [s2r.SUN_VSINI]
                c = domain.domain_check(tmp / "sun.h5", t, [0], tmp / "sun_m.h5", engine=engine)
                print(f"   S/N {snr or 'noiseless':>9}  {engine:8s} {what:12s} CHI2_HR10 {c['CHI2_HR10'][0]:8.1f}  "
                      f"CHI2_HR21 {c['CHI2_HR21'][0]:8.1f}  flagged {bool(c['DOMAIN_FLAG'][0])}")


def ges_part(engines, tmp: Path) -> None:
    import h5py

    from starlabel.evaluation import domain
    from starlabel.grid import HR21, Grid
    from starlabel.io.dataset import write_dataset
    from starlabel.mock import sim_to_real as s2r

    grid = Grid((HR21,))
    f, e = s2r.ges_star_hr21(SHARED, grid)
    # the file's error is per 0.05-Å input pixel; a 0.1-Å grid pixel averages two of them
    e = e / np.sqrt(HR21.step / 0.05)
    mask = (~np.isfinite(f)).astype("u1")[None] * 2
    lab = Table({"TEFF": [s2r.GES_STAR["teff"]], "LOGG": [s2r.GES_STAR["logg"]], "FE_H": [s2r.GES_STAR["feh"]],
                 "VSINI": [3.0]})
    print(f"\n3. the GES HR21 star ({s2r.GES_FILE}) at its iDR6 labels 6203 K / 4.09 / +0.15, v sin i 3 km/s; "
          f"median error {np.nanmedian(e):.4f} (S/N {1 / np.nanmedian(e):.0f} per 0.1-Å pixel)")
    for sigma in ("error spectrum", "DER_SNR"):
        write_dataset(tmp / "ges.h5", grid, np.nan_to_num(f, nan=1.0)[None].astype("f4"), mask,
                      Table({"CNAME": ["GES"]}))
        if sigma == "error spectrum":
            with h5py.File(tmp / "ges.h5", "a") as h:
                h["error"] = np.nan_to_num(e, nan=np.inf)[None]
        for engine in engines:
            c = domain.domain_check(tmp / "ges.h5", lab, [0], tmp / "ges_m.h5", engine=engine)
            print(f"   σ from {sigma:14s} {engine:8s} CHI2_HR21 {c['CHI2_HR21'][0]:7.2f}  "
                  f"flagged {bool(c['DOMAIN_FLAG'][0])}")
    # the same file through `prepare`, as a user would run it (normalised product, velclass VEL, R matching)
    from starlabel.stages.prepare import PrepareSettings, prepare

    cname = s2r.GES_FILE.split("_")[2]
    prepare(Table({"CNAME": [cname], "VRAD": [np.nan]}), SHARED / "spectra" / "ges_giraffe", tmp / "ges_p.h5",
            PrepareSettings(grid=grid), progress=False)
    for engine in engines:
        c = domain.domain_check(tmp / "ges_p.h5", lab, [0], tmp / "ges_m.h5", engine=engine)
        print(f"   prepared, σ DER_SNR   {engine:8s} CHI2_HR21 {c['CHI2_HR21'][0]:7.2f}  "
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
