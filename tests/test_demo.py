"""`starlabel demo` end to end on a tiny survey: every stage runs and the report is written."""

import json

import pytest
from astropy.table import Table

from starlabel.cli import main


@pytest.mark.slow
def test_demo_tiny(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), "--n-stars", "300", "--runs", "2", "--keep", "1",
                 "--max-epochs", "3", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "pca+ridge" in printed
    for name in ("dataset.h5", "sets.h5", "map.h5", "labels.fits", "summary.csv", "report.html",
                 "model/manifest.json", "eval/index.json", "explain/lines.csv"):
        assert (out / name).exists(), name
    summary = Table.read(out / "summary.csv")
    assert {"cnn", "pca+ridge"} <= set(summary["method"])
    assert {"catalogue", "truth"} <= set(summary["reference"])
    labels = Table.read(out / "labels.fits")
    assert {"TEFF_CNN", "E_TEFF_CNN", "INNER", "OUTLIER"} <= set(labels.colnames)
    timings = json.loads((out / "demo.json").read_text())["timings_s"]
    assert timings["total"] > 0
    # a second call finds every output and only rewrites the summary and report
    assert main(["demo", "--out", str(out), "--n-stars", "300", "--runs", "2", "--keep", "1",
                 "--max-epochs", "3", "--seed", "1"]) == 0
    assert "exists, skipped" in capsys.readouterr().out
