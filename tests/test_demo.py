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
                 "model/manifest.json", "model/calibration.json", "eval/index.json", "explain/lines.csv"):
        assert (out / name).exists(), name
    summary = Table.read(out / "summary.csv")
    assert {"cnn", "pca+ridge"} <= set(summary["method"])
    assert {"catalogue", "truth"} <= set(summary["reference"])
    labels = Table.read(out / "labels.fits")
    assert {"TEFF_CNN", "E_TEFF_CNN", "E_TEFF_MODEL", "E_TEFF_TOTAL", "INNER", "OUTLIER"} <= set(labels.colnames)
    timings = json.loads((out / "demo.json").read_text())["timings_s"]
    assert timings["total"] > 0
    # a second call finds every output and only rewrites the summary and report
    assert main(["demo", "--out", str(out), "--n-stars", "300", "--runs", "2", "--keep", "1",
                 "--max-epochs", "3", "--seed", "1"]) == 0
    assert "exists, skipped" in capsys.readouterr().out


def test_a_run_from_before_the_emulator_engine_resumes_only_with_onelayer(tmp_path):
    import json

    from starlabel.stages.demo import _note_engine_of_older_run
    from starlabel.io.run_settings import check_or_record

    path = tmp_path / "demo_settings.json"
    old = dict(preset="quick", seed=0, n_stars=30, runs=1, keep=1, max_epochs=None)
    path.write_text(json.dumps(old))
    _note_engine_of_older_run(path)
    assert json.loads(path.read_text())["engine"] == "onelayer"
    check_or_record(path, old | {"engine": "onelayer"}, tmp_path)  # resumes
    with pytest.raises(ValueError, match="engine"):
        check_or_record(path, old | {"engine": "emulator"}, tmp_path)
