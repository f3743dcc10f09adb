"""`evaluate`: the paper's diagnostics (Sects. 4.1–4.3) as CSV tables and PNG figures.

EVAL_DIR after `evaluate(...)`:
    metrics.csv            bias, scatter, within 1σ/2σ (ensemble σ; and total σ), median σ per subset × reference × label
    outside_limits.csv     share of each subset with catalogue labels outside the training limits
    training_limits.csv    label, min, max over the training candidates
    precision_snr.csv      median ensemble σ per label in S/N bins of 10 (observed set)
    one_to_one_<sets>_<reference>.png   Figs. 8 and 9
    kiel_evolution.png     Fig. 6      loss_curves.png   Fig. 7
    precision.png          Fig. 10     abundance_maps.png  Fig. 3
    calibration_<reference>.png        (CNN − reference)/σ on the test set
    index.json             {file: caption} in display order, read by the HTML report
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["evaluate"]


def _pick_epochs(epochs, n=3):
    """First, a middle and the last snapshot epoch (Fig. 6 shows 1, 10 and 150)."""
    if len(epochs) <= n:
        return list(epochs)
    idx = np.unique(np.round(np.geomspace(1, len(epochs), n)).astype(int) - 1)
    return [epochs[i] for i in idx]


def evaluate(model_dir, sets_path, labels_path, out_dir, map_path=None, truth_path=None) -> dict:
    """Write the tables and figures listed in the module docstring; return {file: caption}."""
    from astropy.table import Table

    from ..evaluation import metrics as M
    from ..io.dataset import Dataset
    from ..io.tables import write_csv
    from ..model.bundle import Bundle
    from ..plots import evaluation as F

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = Dataset(sets_path)
    labels_table = Table.read(labels_path)
    flags = M.read_map_flags(map_path) if map_path else None
    truth = Table.read(truth_path) if truth_path else None
    bundle = Bundle(model_dir)
    split = bundle.split()
    if split is None:
        log.warning("%s has no split.json: training and test sets cannot be told apart", model_dir)
    joined = M.join_run(sets.catalogue, labels_table, split, flags, truth)
    names = joined.meta["labels"]
    if not names:
        raise ValueError(f"{labels_path} has no <LABEL>_CNN columns")
    index: dict[str, str] = {}

    def note(path, caption):  # every table and figure, as it is written: evaluate takes a while
        index[Path(path).name] = caption
        log.info("wrote %s", Path(path).name)

    # ---- tables
    metrics = M.metrics_table(joined)
    note(write_csv(metrics, out_dir / "metrics.csv"), "Bias (mean CNN − reference), scatter (std) and "
         "uncertainty calibration per set, reference and label")
    limits = M.training_limits(joined)
    lim_t = Table({"label": list(limits), "min": [v[0] for v in limits.values()],
                   "max": [v[1] for v in limits.values()]})
    note(write_csv(lim_t, out_dir / "training_limits.csv"), "Training-set limits of the catalogue labels")
    note(write_csv(M.outside_limits_table(joined, limits), out_dir / "outside_limits.csv"),
         "Share of each set with catalogue labels outside the training limits")
    note(write_csv(M.precision_vs_snr(joined), out_dir / "precision_snr.csv"),
         "Median ensemble σ in S/N bins of 10 (observed set)")

    # ---- Figs. 8, 9: one-to-one
    subsets = M.subsets(joined)
    groups = {"training": [s for s in subsets if s in ("train", "test")],
              "observed": [s for s in subsets if s not in ("train", "test")]}
    for reference in M.references(joined):
        for group, members in groups.items():
            if not members:
                continue
            cols = {}
            for s in members:
                m = np.asarray(joined[s], bool)
                ref = np.column_stack([joined[M.ref_column(n, reference)][m] for n in names])
                pred = np.column_stack([joined[f"{n}_CNN"][m] for n in names])
                cols[s] = (ref, pred)
            fig = F.one_to_one(cols, names, out_dir / f"one_to_one_{group}_{reference}.png",
                               limits if group == "observed" else None, reference)
            note(fig, f"One-to-one: CNN against {reference} labels, {group} sets "
                      f"(paper Fig. {8 if group == 'training' else 9}); shaded: outside the training limits")

    # ---- Fig. 6: Kiel diagrams over training
    if {"TEFF", "LOGG"} <= set(names):
        panels = {}
        feh_name = "FE_H" if "FE_H" in names else None
        test = np.asarray(joined["test"], bool) if np.any(joined["test"]) else np.asarray(joined["train"], bool)
        feh_ref = joined[f"{feh_name}_REF"][test] if feh_name else np.zeros(test.sum())
        panels["catalogue (test set)"] = (joined["TEFF_REF"][test], joined["LOGG_REF"][test], feh_ref)
        snaps, rows = bundle.snapshots()
        order = bundle.label_names
        if snaps and rows is not None and {"TEFF", "LOGG"} <= set(order):
            it, il = order.index("TEFF"), order.index("LOGG")
            ifeh = order.index(feh_name) if feh_name in order else None
            for ep in _pick_epochs(list(snaps)):
                p = snaps[ep]
                panels[f"epoch {ep}"] = (p[:, it], p[:, il], p[:, ifeh] if ifeh is not None else np.zeros(len(p)))
        feh_cnn = joined[f"{feh_name}_CNN"][test] if feh_name else np.zeros(test.sum())
        panels["ensemble (final)"] = (joined["TEFF_CNN"][test], joined["LOGG_CNN"][test], feh_cnn)
        note(F.kiel_evolution(panels, out_dir / "kiel_evolution.png"),
             "Kiel diagram of the test set: catalogue labels, predictions of the first kept run during "
             "training, and the final ensemble (paper Fig. 6)")

    # ---- Fig. 7: loss curves
    history = bundle.history()
    if history is not None:
        kept = set(bundle.kept) or None
        note(F.loss_curves(history, out_dir / "loss_curves.png", kept),
             "Training and test loss of every run (paper Fig. 7)")

    # ---- Fig. 10: internal precision
    observed_groups = groups["observed"] or ["observed"]
    grp = {g: np.asarray(joined[g], bool) for g in observed_groups if g in joined.colnames}
    if any(m.any() for m in grp.values()):
        note(F.precision({n: joined[f"{n}_CNN"] for n in names}, {n: joined[f"E_{n}_CNN"] for n in names},
                         joined["SNR"], grp, names, out_dir / "precision.png"),
             "Internal precision (ensemble σ) against label value and S/N, box plots in S/N bins of 10 "
             "(paper Fig. 10)")

    # ---- Fig. 3: abundance planes
    if {"FE_H", "MG_FE", "AL_FE"} <= set(names):
        cand = np.asarray(joined["train"], bool) | np.asarray(joined["test"], bool)
        obs = np.asarray(joined["observed"], bool)
        cols = {"catalogue (training candidates)": tuple(joined[f"{n}_REF"][cand] for n in ("FE_H", "MG_FE", "AL_FE")),
                "CNN (training candidates)": tuple(joined[f"{n}_CNN"][cand] for n in ("FE_H", "MG_FE", "AL_FE")),
                "CNN (observed set)": tuple(joined[f"{n}_CNN"][obs] for n in ("FE_H", "MG_FE", "AL_FE"))}
        note(F.abundance_maps(cols, out_dir / "abundance_maps.png"), "[Mg/Fe] and [Al/Fe] against [Fe/H] (paper Fig. 3)")

    # ---- uncertainty calibration
    test = np.asarray(joined["test"], bool)
    if test.any():
        for reference in M.references(joined):
            with np.errstate(divide="ignore", invalid="ignore"):  # σ = 0 with a single kept model
                res = {n: (joined[f"{n}_CNN"][test] - joined[M.ref_column(n, reference)][test])
                       / joined[f"E_{n}_CNN"][test] for n in names}
            note(F.calibration(res, out_dir / f"calibration_{reference}.png", f"test set against {reference}"),
                 f"Uncertainty calibration: (CNN − {reference}) / ensemble σ on the test set")

    from ..io.atomic import write_json

    write_json(out_dir / "index.json", index, indent=1, ensure_ascii=False)
    if len(metrics):
        log.info("%s", format_metrics(metrics))
    return index


def format_metrics(metrics) -> str:
    """The metrics table as aligned text: bias and scatter at 4 decimals, shares at 2 ('' for no rows)."""
    if len(metrics) == 0:
        return ""
    total = bool(np.isfinite(metrics["within_1sigma_total"]).any())
    lines = [f"{'set':<15} {'reference':<10} {'label':<7} {'n':>6} {'bias':>10} {'scatter':>10} {'≤1σ':>5} {'≤2σ':>5}"
             + (f" {'≤1σt':>5} {'≤2σt':>5}" if total else "")]
    for r in metrics:
        lines.append(f"{r['set']:<15} {r['reference']:<10} {r['label']:<7} {r['n']:6d} {r['bias']:+10.4f} "
                     f"{r['scatter']:10.4f} {r['within_1sigma']:5.2f} {r['within_2sigma']:5.2f}"
                     + (f" {r['within_1sigma_total']:5.2f} {r['within_2sigma_total']:5.2f}" if total else ""))
    return "\n".join(lines)
