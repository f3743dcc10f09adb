"""`report`: one self-contained HTML page summarising a run, for a collaborator to open offline.

Every image is embedded as a base64 PNG data URI and all styling is inline: the page
loads nothing from disk or network, so it can be mailed or archived as one file.

The RUN_DIR layout it reads (what `starlabel demo` writes; every part is optional,
and the page says which ones are missing and which command makes them):

    RUN_DIR/
      survey/truth.fits          `starlabel synth survey`   (truth labels of a mock survey)
      dataset.h5                 `starlabel prepare`        (attrs: settings, version, created)
      sets.h5                    `starlabel select`
      map.h5, map_outliers.csv   `starlabel map`
      map_figures/*.png          `plots.maps.write_map_figures` (Figs. 1, 4; PNGs whose
                                 name contains 'outlier' or 'thumb' are shown as outlier sheets)
      outliers/*.png             optional single-spectrum thumbnails, shown as a grid
      model/                     `starlabel train` (manifest.json, history.json, ...)
      labels.fits                `starlabel predict`
      labels_model.h5            `starlabel predict --model-spectra` (domain score; figures drawn by the report)
      explain/                   `starlabel explain` (explain.h5, lines.csv, gradients.png,
                                 correlation/ with correlation.csv, gradients_correlated.png)
      eval/                      `starlabel evaluate` (index.json, *.csv, *.png)
      summary.csv                `starlabel demo` (bias/scatter summary), optional
      validate/                  `starlabel validate all` (validate.json, *_summary.csv, *.png)
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..io.atomic import atomic_path

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{border-bottom:2px solid #446}h2{margin-top:2em;border-bottom:1px solid #aab;color:#334}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}td,th{border:1px solid #ccd;padding:2px 7px;text-align:right}
th{background:#eef}td.s,th.s{text-align:left}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figure img{width:100%}figcaption,p.caption{font-size:.9em;color:#444}ul.summary{font-size:1.1em;line-height:1.6}.missing{color:#a33;background:#fee;padding:.4em .8em;border-left:4px solid #c55}
.thumbs img{width:300px;margin:3px;border:1px solid #ccc}pre{background:#f6f6f9;padding:.6em;overflow-x:auto;font-size:.8em}
details{margin:.5em 0}nav a{margin-right:1em}
"""

SECTIONS = (("summary", "Summary"), ("accuracy", "Accuracy and uncertainties"),
            ("figures", "Diagnostic figures"), ("map", "Similarity map and outliers"),
            ("gradients", "Gradient sensitivity maps"), ("domain", "Domain score: spectra against their model"),
            ("validation", "Science validation (Sect. 5)"),
            ("provenance", "Run settings and provenance"))
COLLAPSED = ("provenance",)  # shown as a closed <details> at the end


def _esc(x) -> str:
    return html.escape(str(x))


def img_tag(path, alt="", cls="") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}"{f" class={cls!r}" if cls else ""}>'


def figure(path, caption="") -> str:
    return f"<figure>{img_tag(path, caption or Path(path).name)}<figcaption>{_esc(caption or Path(path).name)}" \
           f"</figcaption></figure>"


def missing(what, how) -> str:
    return f'<p class="missing">Not in this run: {_esc(what)}. {_esc(how)}</p>'


def _fmt(v: str) -> tuple[str, bool]:
    """(formatted cell, numeric?): 4 significant digits, but 2 decimals kept above 100
    (wavelengths in Å, Teff in K)."""
    try:
        f = float(v)
    except ValueError:
        return v, False
    if v.strip().lstrip("-").isdigit() or not np.isfinite(f):
        return v, True
    if abs(f) >= 100:
        return f"{f:.2f}".rstrip("0").rstrip("."), True
    if abs(f) < 1:  # biases, scatters, fractions: 3 decimals, no exponent (-3.6e-06 -> -0.000)
        return f"{f:.3f}", True
    return f"{f:.3g}", True


def csv_table(path, max_rows=200) -> str:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return "<p>(empty table)</p>"
    head, body = rows[0], rows[1:]
    out = ["<table><tr>" + "".join(f'<th class="s">{_esc(h)}</th>' for h in head) + "</tr>"]
    for r in body[:max_rows]:
        cells = [_fmt(c) for c in r]
        out.append("<tr>" + "".join(f'<td{"" if num else " class=s"}>{_esc(c)}</td>' for c, num in cells) + "</tr>")
    out.append("</table>")
    if len(body) > max_rows:
        out.append(f"<p>… {len(body) - max_rows} more rows in {_esc(Path(path).name)}</p>")
    return "".join(out)


def metrics_pivot(path) -> str:
    """metrics.csv as one row per set and reference, one 'bias / scatter' cell per label."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    keys = list(dict.fromkeys((r["set"], r["reference"]) for r in rows))
    cell = {(r["set"], r["reference"], r["label"]): r for r in rows}
    out = ['<table><tr><th class="s">set</th><th class="s">reference</th><th>n</th>'
           + "".join(f"<th>{_esc(lab)}</th>" for lab in labels) + "</tr>"]
    for s, ref in keys:
        first = cell.get((s, ref, labels[0]), {})
        tds = "".join(f"<td>{_esc(_fmt(cell[(s, ref, lab)]['bias'])[0])} / {_esc(_fmt(cell[(s, ref, lab)]['scatter'])[0])}"
                      f"</td>" if (s, ref, lab) in cell else "<td></td>" for lab in labels)
        out.append(f'<tr><td class="s">{_esc(s)}</td><td class="s">{_esc(ref)}</td>'
                   f"<td>{_esc(first.get('n', ''))}</td>{tds}</tr>")
    return "".join(out) + "</table>"


def dict_table(d: dict) -> str:
    rows = "".join(f'<tr><th class="s">{_esc(k)}</th><td class="s">{_esc(_short(v))}</td></tr>' for k, v in d.items())
    return f"<table>{rows}</table>"


def _short(v, limit=300) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= limit else s[:limit] + " …"


def _h5_attrs(path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items() if k != "grid"}


# ---------------------------------------------------------------- sections

def section_provenance(run: Path) -> str:
    parts = []
    man_path = run / "model" / "manifest.json"
    if man_path.exists():
        from ..model.bundle import Bundle, BundleError

        try:
            man = Bundle(man_path.parent).manifest
        except BundleError as e:
            return missing("a readable model/manifest.json", str(e))
        runs = man.get("runs", [])
        parts.append("<h3>Model bundle (model/manifest.json)</h3>")
        parts.append(dict_table({k: v for k, v in man.items() if k not in ("runs", "grid")}))
        if runs:
            keys = list(runs[0])
            parts.append("<table><tr>" + "".join(f"<th>{_esc(k)}</th>" for k in keys) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{_esc(_fmt(str(r.get(k, '')))[0])}</td>" for k in keys) + "</tr>"
                for r in runs) + "</table>")
    else:
        parts.append(missing("model/manifest.json", "Run `starlabel train SETS.h5 --out RUN_DIR/model`."))
    for name, verb in (("dataset.h5", "prepare"), ("sets.h5", "select")):
        p = run / name
        if p.exists():
            attrs = _h5_attrs(p)
            settings = attrs.pop("settings", "{}")
            parts.append(f"<h3>{_esc(name)}</h3>" + dict_table(attrs))
            parts.append(f"<details><summary>settings</summary><pre>{_esc(_pretty_json(settings))}</pre></details>")
        else:
            parts.append(missing(name, f"Run `starlabel {verb}`."))
    return "".join(parts)


def _pretty_json(text) -> str:
    try:
        return json.dumps(json.loads(text), indent=1, default=str)
    except (TypeError, ValueError):
        return str(text)


def section_accuracy(run: Path) -> str:
    parts = []
    summary = run / "summary.csv"
    if summary.exists():
        parts.append("<details><summary>full table: summary.csv (every set, reference and method)</summary>"
                     + csv_table(summary) + "</details>")
    ev = run / "eval"
    captions = {"metrics.csv": "Bias (mean CNN − reference) and scatter (std); within_kσ: share of stars whose "
                               "reference lies within k ensemble standard deviations (_total: within k total "
                               "uncertainties, ensemble σ ⊕ noise σ ⊕ model σ of a calibrated bundle)",
                "outside_limits.csv": "Share with catalogue labels outside the training limits",
                "training_limits.csv": "Training-set limits",
                "precision_snr.csv": "Median ensemble σ (and total σ) vs S/N"}
    found = False
    if (ev / "metrics.csv").exists():
        parts.append("<h3>Bias / scatter per set (CNN − reference)</h3>" + metrics_pivot(ev / "metrics.csv"))
    from .report_summary import calibration_table

    parts.append(calibration_table(run / "model"))
    for name, cap in captions.items():
        if (ev / name).exists():
            found = True
            table = f"<h3>{_esc(cap)} ({_esc(name)})</h3>" + csv_table(ev / name)
            parts.append(f"<details><summary>full table: {_esc(name)}</summary>{table}</details>"
                         if name == "metrics.csv" else table)
    if not found:
        parts.append(missing("eval/ tables", "Run `starlabel evaluate MODEL_DIR SETS.h5 LABELS.fits --out RUN_DIR/eval`."))
    return "".join(parts)


def section_figures(run: Path) -> str:
    ev = run / "eval"
    index = json.loads((ev / "index.json").read_text()) if (ev / "index.json").exists() else {}
    pngs = [ev / n for n in index if n.endswith(".png") and (ev / n).exists()]
    pngs += sorted(p for p in ev.glob("*.png") if p not in pngs) if ev.is_dir() else []
    if not pngs:
        return missing("eval/ figures", "Run `starlabel evaluate`.")
    return "".join(figure(p, index.get(p.name, p.name)) for p in pngs)


def _is_thumb(p: Path) -> bool:
    n = p.name.lower()
    return "outlier" in n or "thumb" in n


def section_map(run: Path) -> str:
    parts = []
    mp = run / "map.h5"
    if mp.exists():
        try:
            from ..similarity import SimilarityMap

            parts.append(f"<pre>{_esc(SimilarityMap.load(mp).format_summary())}</pre>")
        except Exception as e:  # a report should still render with an unreadable map
            parts.append(missing("a readable map.h5", f"Reading it failed: {e}"))
    else:
        parts.append(missing("map.h5", "Run `starlabel map SETS.h5 --out RUN_DIR/map.h5`."))
    figs = sorted((run / "map_figures").glob("*.png"), key=lambda p: (_is_thumb(p), p.name)) \
        if (run / "map_figures").is_dir() else []
    for p in figs:  # figure sheets first, outlier thumbnail sheets last
        caption = "Flagged outlier spectra" if _is_thumb(p) else p.stem.replace("_", " ")
        parts.append(figure(p, f"{caption} ({p.name})"))
    if not figs:
        parts.append(missing("map_figures/", "The map figures are written by the map figure step of `starlabel demo`."))
    ocsv = run / "map_outliers.csv"
    if ocsv.exists():
        parts.append("<h3>Flagged outliers (map_outliers.csv)</h3>" + csv_table(ocsv, max_rows=50))
    thumbs = sorted((run / "outliers").glob("*.png")) if (run / "outliers").is_dir() else []
    if thumbs:
        parts.append("<h3>Outlier spectra</h3><div class=thumbs>"
                     + "".join(img_tag(p, p.stem) for p in thumbs) + "</div>")
    return "".join(parts)


def section_gradients(run: Path) -> str:
    ex = run / "explain"
    parts = []
    if (ex / "gradients.png").exists():
        parts.append(figure(ex / "gradients.png", "Ensemble-mean ∂label/∂flux under the average spectrum, "
                            "with line markers (paper Fig. 11)"))
    else:
        parts.append(missing("explain/gradients.png", "Run `starlabel explain MODEL_DIR SETS.h5 --out RUN_DIR/explain/explain.h5`."))
    if (ex / "lines.csv").exists():
        parts.append("<h3>Strongest narrow gradient peaks and their lines (lines.csv)</h3>" + csv_table(ex / "lines.csv"))
    if (ex / "line_check.csv").exists():
        parts.append("<h3>Are Mg and Al read from the lines GES used? (line_check.csv)</h3>"
                     + csv_table(ex / "line_check.csv"))
    cor = ex / "correlation"
    if (cor / "correlation.csv").exists():
        parts.append("<h3>Gradient correlations between labels: absolute vs relative abundances (Sect. 4.4)</h3>"
                     + csv_table(cor / "correlation.csv"))
    if (cor / "gradients_correlated.png").exists():
        parts.append(figure(cor / "gradients_correlated.png", "Gradients of the abundance labels near two Mg and "
                            "one Al line for both label choices (paper Fig. 12)"))
    for p in sorted(ex.glob("*.png")) if ex.is_dir() else []:
        if p.name != "gradients.png":
            parts.append(figure(p, p.stem.replace("_", " ")))
    return "".join(parts)


VALIDATION_TITLES = {"benchmarks": "Benchmark stars (Fig. 13)", "seismic": "Asteroseismic log g (Fig. 14)",
          "clusters": "Globular clusters (Figs. 15, 16)", "discs": "Thin and thick disc (Fig. 17)",
          "orbits": "Orbits (Fig. 18)", "ages": "Ages of turn-off stars", "observed": "Accuracy per observed subgroup"}


def section_validation(run: Path) -> str:
    """RUN_DIR/validate/ as written by `starlabel validate all`."""
    d = Path(run) / "validate"
    if not (d / "validate.json").exists():
        return missing("validate/validate.json", "Run `starlabel validate all LABELS.fits CATALOGUE.fits "
                       "--out RUN_DIR/validate` (the demo does).")
    results = json.loads((d / "validate.json").read_text())
    parts = []
    for name, r in results.items():
        parts.append(f"<h3>{_esc(VALIDATION_TITLES.get(name, name))}</h3>")
        if r.get("status") != "done":
            parts.append(missing(name, f"{r.get('status')}: {r.get('reason', '')}"))
            continue
        files = r.get("files", {})
        summary = d / f"{name}_summary.csv"
        if summary.exists():
            parts.append(csv_table(summary, max_rows=60))
        for f, caption in files.items():
            if f.endswith(".png") and (d / f).exists():
                parts.append(figure(d / f, caption))
        meta = {k: v for k, v in r.get("meta", {}).items()}
        parts.append(f"<details><summary>cuts and settings</summary><pre>{_esc(json.dumps(meta, indent=1))}</pre>"
                     "</details>")
    return "".join(parts)


def section_summary(run: Path) -> str:
    from .report_summary import section_summary as build

    return build(run, figure)


def section_domain(run: Path) -> str:
    from .report_domain import section_domain as build

    return build(run, figure, missing)


BUILDERS = {"summary": section_summary, "provenance": section_provenance, "accuracy": section_accuracy,
            "figures": section_figures, "map": section_map, "gradients": section_gradients,
            "validation": section_validation, "domain": section_domain}


def render(run_dir) -> str:
    """The report page as one HTML string."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {run} does not exist")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>starlabel run report</h1><p>Run directory <code>{_esc(run.resolve())}</code>; "
            f"written {now} by starlabel {_esc(__version__)}.</p>",
            "<nav>" + "".join(f'<a href="#{k}">{_esc(t)}</a>' for k, t in SECTIONS) + "</nav>"]
    for key, title in SECTIONS:
        try:
            content = BUILDERS[key](run)
        except Exception as e:  # one broken part must not cost the whole page
            content = missing(title, f"Building this section failed: {type(e).__name__}: {e}")
        if key in COLLAPSED:
            content = f"<details><summary>show {_esc(title.lower())}</summary>{content}</details>"
        body.append(f'<section id="{key}"><h2>{_esc(title)}</h2>{content}</section>')
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>starlabel report: {_esc(run.name)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def report(run_dir, out) -> Path:
    """Write the report page atomically; return its path."""
    out = Path(out)
    page = render(run_dir)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
