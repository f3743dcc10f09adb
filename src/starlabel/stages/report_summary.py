"""The report's opening section: what a scientist reads first.

How many spectra got labels, how many are flagged and why, the headline accuracy per label on the
held-out test set with how often the quoted uncertainty covers the error, and the similarity map.
Everything is read from the run directory's files; a missing file leaves its line out.
"""

from __future__ import annotations

import csv
import html
from collections import Counter
from pathlib import Path

import numpy as np

UNITS = {"TEFF": "K", "LOGG": "dex", "FE_H": "dex", "MG_FE": "dex", "AL_FE": "dex"}


def _esc(x) -> str:
    return html.escape(str(x))


def _num(v, digits: int) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if not np.isfinite(f) else f"{f:+.{digits}f}" if digits < 0 else f"{f:.{digits}f}"


def _digits(label: str) -> int:
    return 0 if label == "TEFF" else 3


def labelled_counts(run: Path) -> list[str]:
    """Sentences: spectra labelled, with NaN labels, flagged as outliers / outside the training set."""
    path = run / "labels.fits"
    if not path.exists():
        return []
    from astropy.table import Table

    t = Table.read(path)
    cnn = [c for c in t.colnames if c.endswith("_CNN") and not c.startswith("E_")]
    ok = np.all([np.isfinite(np.asarray(t[c], float)) for c in cnn], axis=0) if cnn else np.ones(len(t), bool)
    lines = [f"<b>{int(ok.sum())}</b> of {len(t)} spectra labelled ({', '.join(c[:-4] for c in cnn)})"
             + (f"; {int((~ok).sum())} without labels (non-finite flux)" if (~ok).any() else "")]
    flags = []
    if "OUTLIER" in t.colnames:
        flags.append(f"{int(np.sum(t['OUTLIER']))} outliers on the similarity map (unlike any other spectrum)")
    if "INNER" in t.colnames:
        flags.append(f"{int(np.sum(~np.asarray(t['INNER'], bool)))} outside the region the training set covers "
                     "(labels less reliable; the paper's outer observed set)")
    if flags:
        lines.append("flagged: " + "; ".join(flags))
    return lines


def reject_counts(run: Path) -> str | None:
    """One sentence on the spectra `prepare` left out, by reason."""
    path = run / "dataset.h5"
    if not path.exists():
        return None
    import h5py

    from ..io.dataset import read_table
    from ..io.fits_check import is_warning

    with h5py.File(path, "r") as f:
        if "rejects" not in f:
            return None
        rej = read_table(f, "rejects")
    reasons = [str(r) for r in rej["REASON"]]
    kinds = Counter("kept with a warning" if is_warning(r) else _kind(r) for r in reasons)
    if not kinds:
        return "prepare rejected no spectra"
    return "prepare rejected or warned about " + ", ".join(f"{v} ({k})" for k, v in kinds.most_common())


def _kind(reason: str) -> str:
    from ..prepare import _kind as kind

    return kind(reason)


def headline_table(run: Path) -> str | None:
    """Per label on the test set: bias, scatter, and the share within 1σ / 2σ (ideal 68 % / 95 %)."""
    path = run / "eval" / "metrics.csv"
    if not path.exists():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    refs = [r for r in ("truth", "catalogue") if any(x["set"] == "test" and x["reference"] == r for x in rows)]
    if not refs:
        return None
    ref = refs[0]
    sel = [r for r in rows if r["set"] == "test" and r["reference"] == ref]
    total = any(np.isfinite(float(r.get("within_1sigma_total") or "nan")) for r in sel)
    head = ("<tr><th class=s>label</th><th>n</th><th>bias</th><th>scatter</th><th>within 1σ</th><th>within 2σ</th>"
            + ("<th>within 1σ total</th>" if total else "") + "</tr>")
    body = []
    no_spread = False
    for r in sel:
        d, unit = _digits(r["label"]), UNITS.get(r["label"], "")
        zero = float(r.get("median_std") or "nan") == 0  # one kept network: no ensemble spread to judge
        no_spread |= zero

        def pct(k, r=r, zero=zero):
            return "–" if (zero and "total" not in k) or not r.get(k) else _num(100 * float(r[k]), 0) + " %"

        body.append(f"<tr><td class=s>{_esc(r['label'])}</td><td>{_esc(r['n'])}</td>"
                    f"<td>{_num(r['bias'], d)} {unit}</td><td>{_num(r['scatter'], d)} {unit}</td>"
                    f"<td>{pct('within_1sigma')}</td><td>{pct('within_2sigma')}</td>"
                    + (f"<td>{pct('within_1sigma_total')}</td>" if total else "") + "</tr>")
    what = "the mock survey's true labels" if ref == "truth" else "the survey catalogue's labels"
    caption = (f"Held-out test set, CNN minus {what}. 'Within kσ': share of stars whose reference lies within k "
               "ensemble standard deviations; a calibrated uncertainty gives 68 % and 95 %."
               + (" –: the ensemble has one network, so no spread." if no_spread else "")
               + (" The bundle is calibrated on this test set (starlabel calibrate), so its 'within 1σ total' is 68 %"
                  " by construction; the inner observed sets in the full table are the independent check."
                  if total and (run / "model" / "calibration.json").exists() else ""))
    return f"<table>{head}{''.join(body)}</table><p class=caption>{_esc(caption)}</p>"


def calibration_table(model_dir: Path) -> str:
    """The bundle's model-error term per label (`starlabel calibrate`), or '' when it has none."""
    from ..model.bundle import Bundle, BundleError

    try:
        record = Bundle(model_dir).calibration() if (model_dir / "calibration.json").exists() else None
    except BundleError:
        return ""
    if not record:
        return ""
    head = ("<tr><th class=s>label</th><th>σ_model</th><th>n</th><th>within 1σ before</th><th>within 1σ</th>"
            "<th>within 2σ</th></tr>")
    body = "".join(
        f"<tr><td class=s>{_esc(n)}</td><td>{_num(c.get('sigma_model'), _digits(n) + 1)} {UNITS.get(n, '')}</td>"
        f"<td>{_esc(c.get('n', '–'))}</td>"
        + "".join(f"<td>{_num(None if c.get(k) is None else 100 * c[k], 0)} %</td>"
                  for k in ("within_1sigma_before", "within_1sigma", "within_2sigma"))
        + "</tr>" for n, c in record["labels"].items())
    return (f"<h3>Model-error term (starlabel calibrate): {_esc(record.get('n_spectra', '?'))} "
            f"{_esc(record.get('rows', ''))} spectra against {_esc(record.get('reference', '?'))}</h3>"
            f"<table>{head}{body}</table><p class=caption>"
            "E_&lt;LABEL&gt;_TOTAL = E_CNN ⊕ E_NOISE ⊕ σ_model. Coverage of the reference on the spectra "
            "σ_model was fitted on, before and after adding it (the reference's own errors counted in both).</p>")


def map_figure(run: Path) -> Path | None:
    d = run / "map_figures"
    if not d.is_dir():
        return None
    figs = sorted(p for p in d.glob("*.png") if "outlier" not in p.name.lower() and "thumb" not in p.name.lower())
    return figs[0] if figs else None


def section_summary(run: Path, figure) -> str:
    """The summary section; `figure(path, caption)` renders an embedded figure."""
    parts = []
    items = labelled_counts(run)
    rej = reject_counts(run)
    if rej:
        items.append(rej)
    if items:
        parts.append("<ul class=summary>" + "".join(f"<li>{x}</li>" for x in items) + "</ul>")
    table = headline_table(run)
    if table:
        parts.append("<h3>Accuracy per label</h3>" + table)
    fig = map_figure(run)
    if fig is not None:
        parts.append(figure(fig, "Similarity map (t-SNE of all spectra): where the observed spectra lie relative "
                                 f"to the training set ({fig.name})"))
    return "".join(parts) or "<p>Nothing to summarise yet: run `starlabel demo` or the stages.</p>"
