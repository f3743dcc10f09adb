"""The report's science-validation section: RUN_DIR/validate/ as written by `starlabel validate all`."""

from __future__ import annotations

import json
from pathlib import Path

from .html import _esc, csv_table, figure, missing

TITLES = {"benchmarks": "Benchmark stars (Fig. 13)", "seismic": "Asteroseismic log g (Fig. 14)",
          "clusters": "Globular clusters (Figs. 15, 16)", "discs": "Thin and thick disc (Fig. 17)",
          "orbits": "Orbits (Fig. 18)", "ages": "Ages of turn-off stars", "observed": "Accuracy per observed subgroup"}


def section(run: Path) -> str:
    d = Path(run) / "validate"
    if not (d / "validate.json").exists():
        return missing("validate/validate.json", "Run `starlabel validate all LABELS.fits CATALOGUE.fits "
                       "--out RUN_DIR/validate` (the demo does).")
    results = json.loads((d / "validate.json").read_text())
    parts = []
    for name, r in results.items():
        parts.append(f"<h3>{_esc(TITLES.get(name, name))}</h3>")
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
