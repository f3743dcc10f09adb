"""A small survey through the first stages: synth 200 stars → prepare → select."""

import numpy as np
import pytest
from astropy.table import Table

from starlabel.cli import main
from starlabel.io.dataset import Dataset


@pytest.mark.slow
def test_synth_prepare_select(tmp_path, capsys):
    survey = tmp_path / "survey"
    assert main(["synth", "survey", "--out", str(survey), "--n-stars", "200", "--seed", "3",
                 "--workers", "1", "--no-progress"]) == 0
    catalogue = Table.read(survey / "catalogue.fits")
    assert len(catalogue) == 200
    assert main(["prepare", str(survey / "catalogue.fits"), str(survey / "spectra"),
                 "--out", str(tmp_path / "dataset.h5"), "--no-progress"]) == 0
    ds = Dataset(tmp_path / "dataset.h5")
    assert ds.n_pixels == 8669
    # every star is either prepared or listed as rejected with a reason, never silently dropped
    rejected = set(np.asarray(ds.rejects["CNAME"]).astype(str))
    prepared = set(np.asarray(ds.catalogue["CNAME"]).astype(str))
    assert prepared | rejected == set(np.asarray(catalogue["CNAME"]).astype(str))
    assert not prepared & rejected
    assert np.isfinite(ds.read()).all()

    assert main(["select", str(tmp_path / "dataset.h5"), "--out", str(tmp_path / "sets.h5")]) == 0
    out = capsys.readouterr().out
    assert "S/N >= 30" in out and "training candidates" in out
    sets = Dataset(tmp_path / "sets.h5")
    train = sets.catalogue[sets.rows(SET="train")]
    assert len(train) > 20
    assert (train["SNR"] >= 30).all() and (train["VSINI"] <= 20).all()
    assert np.all(np.abs(train["FEH"] - train["FE_H"]) <= 0.2)
    assert (sets.catalogue["SNR"] >= 10).all()
