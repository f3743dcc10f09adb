"""The report's domain-score section: do the spectra look like their labels?

Read from RUN_DIR/labels_model.h5 (`starlabel predict ... --out RUN_DIR/labels.fits --model-spectra`):
the DOMAIN_CHI2 histogram with the threshold, and observed vs model with the residual per setup for
the star with the median DOMAIN_CHI2 and for the worst flagged one. The figures are drawn into a
temporary directory and embedded (the page stays one self-contained file).
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import numpy as np

MODEL_FILE = "labels_model.h5"


def section_domain(run: Path, figure, missing) -> str:
    import h5py

    from ..io.dataset import read_table
    from ..plots.domain import write_domain_figures

    path = run / MODEL_FILE
    if not path.exists():
        return missing(f"{MODEL_FILE} (domain score)",
                       "Run `starlabel predict MODEL_DIR SETS.h5 --out RUN_DIR/labels.fits --model-spectra`.")
    with h5py.File(path, "r") as h5:
        cat = read_table(h5, "catalogue")
        engine, threshold = str(h5.attrs["engine"]), float(h5.attrs["threshold"])
        dataset = Path(str(h5.attrs.get("dataset", "")))
    if not dataset.exists():
        dataset = run / "sets.h5"
    chi2 = np.asarray(cat["DOMAIN_CHI2"], float)
    flag = np.asarray(cat["DOMAIN_FLAG"], bool)
    parts = [f"<p>Model spectra from the <b>{html.escape(engine)}</b> engine at each star's predicted labels: "
             f"{int(flag.sum())} of {len(flag)} spectra flagged (DOMAIN_CHI2 &gt; {threshold:g} or no model). "
             "A flagged spectrum does not look like its labels: do not trust them without a look.</p>"]
    with tempfile.TemporaryDirectory() as d:
        figs = write_domain_figures(path, dataset, d)
        parts.append(figure(figs["histogram"], "DOMAIN_CHI2: the worst setup's reduced χ² against the model"))
        parts.append(figure(figs["spectrum"], "The star with the median DOMAIN_CHI2: observed, model, residual"))
        if flag.any() and np.isfinite(chi2[flag]).any():
            worst = str(np.asarray(cat["CNAME"]).astype(str)[flag][np.nanargmax(chi2[flag])])
            figs = write_domain_figures(path, dataset, d, cname=worst)
            parts.append(figure(figs["spectrum"], f"The worst flagged star, {worst}"))
    return "".join(parts)
