"""Shared fixtures: the real reference data beside the project (skipped with a reason when absent),
and the toy data sets and trained toy bundle that many test files use, built once per session."""

from pathlib import Path

import pytest

from toys import FAST, make_run, make_sets

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (CI always has it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def toy_sets(tmp_path_factory) -> Path:
    """SETS.h5 of 300 toy spectra, all SET == 'train'."""
    return make_sets(tmp_path_factory.mktemp("toy") / "SETS.h5", n=300)


@pytest.fixture(scope="session")
def toy_bundle(toy_sets, tmp_path_factory) -> Path:
    """A bundle trained on `toy_sets`: the best 2 of 3 quick-preset runs (read it, do not change it)."""
    from starlabel.stages.train import train

    return train(toy_sets, tmp_path_factory.mktemp("model") / "bundle", runs=3, keep=2, seed=1, **FAST)


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory):
    """A fake RUN_DIR (toys.make_run) after `evaluate`: (run dir, {file: caption})."""
    from starlabel.plots import common as figures
    from starlabel.stages.evaluate import evaluate

    figures.DPI = 40  # figures are the slow part
    try:
        run = make_run(tmp_path_factory.mktemp("run"))
        index = evaluate(run / "model", run / "sets.h5", run / "labels.fits", run / "eval",
                         map_path=run / "map.h5", truth_path=run / "survey" / "truth.fits")
    finally:
        figures.DPI = 110
    return run, index
