"""`starlabel predict` (issue 3 §3): labels for every spectrum, NaN for broken ones, bounded memory."""

import numpy as np
import pytest
from astropy.table import Table

from starlabel.cli import main
from starlabel.grid import Grid
from starlabel.model.ensemble import BundleError, Ensemble
from starlabel.stages.predict import predict
from toys import LABELS, make_sets


@pytest.fixture
def model(toy_bundle):
    return toy_bundle


def test_predict_labels_all_but_the_broken_spectrum(model, tmp_path):
    data = make_sets(tmp_path / "obs.h5", n=50, seed=9, nan_rows=(7,), n_observed=50)
    with pytest.warns(UserWarning, match="TOY00007"):
        out = predict(model, data, tmp_path / "labels.fits", carry=["SNR", "SET"], chunk=16,
                      progress=False)
    t = Table.read(out, mask_invalid=False)
    assert len(t) == 50 and t.colnames[:3] == ["CNAME", "SNR", "SET"]
    for n in LABELS:
        assert f"{n}_CNN" in t.colnames and f"E_{n}_CNN" in t.colnames
    assert t["CNAME"][7] == "TOY00007" and np.isnan(t["TEFF_CNN"][7]) and np.isnan(t["E_FE_H_CNN"][7])
    ok = np.arange(50) != 7
    assert np.isfinite(t["TEFF_CNN"][ok]).all() and (t["E_TEFF_CNN"][ok] > 0).all()
    # the same numbers as the Python API, independent of the chunk size
    from starlabel.io.dataset import Dataset

    pred = Ensemble.load(model).predict(Dataset(data).read()[ok])
    mean, std = pred.mean, pred.std
    # the networks compute in float32, and other batch sizes round differently: tolerances of
    # about a hundred float32 ulps (the fused path groups spectra differently too) (a std of nearly equal numbers loses more)
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(t["TEFF_CNN"][ok], mean[:, 0], rtol=100 * eps)
    np.testing.assert_allclose(t["E_LOGG_CNN"][ok], std[:, 1], rtol=100 * eps, atol=100 * eps)


def test_predict_cli_and_clear_errors(model, tmp_path, capsys):
    data = make_sets(tmp_path / "obs.h5", n=20, seed=2)
    assert main(["predict", str(model), str(data), "--out", str(tmp_path / "l.fits"), "--carry", "SNR"]) == 0
    assert len(Table.read(tmp_path / "l.fits")) == 20
    assert main(["predict", str(model), str(data), "--out", str(tmp_path / "x.fits"), "--carry", "NOPE"]) == 2
    assert "NOPE" in capsys.readouterr().err
    other = make_sets(tmp_path / "other.h5", n=10, grid=Grid.from_spec("X:5000:5060.1:0.1"))
    with pytest.raises(BundleError, match="grid"):
        predict(model, other, tmp_path / "y.fits", progress=False)
    assert not (tmp_path / "y.fits").exists()


@pytest.mark.slow
def test_predict_attaches_map_flags(model, tmp_path):
    from starlabel.similarity import SimilarityMap
    from starlabel.stages.map import map as map_spectra
    from starlabel.io.dataset import Dataset, write_dataset

    sets = make_sets(tmp_path / "sets.h5", n=160, seed=3, n_observed=60)
    map_spectra(sets, tmp_path / "map.h5", seed=0)
    m = SimilarityMap.load(tmp_path / "map.h5")
    # a night's new spectra: renamed copies of map spectra, so they must be placed, not looked up
    ds = Dataset(sets)
    cat = ds.catalogue[:40].copy()
    cat["CNAME"] = [f"NEW{i:05d}" for i in range(40)]
    new = write_dataset(tmp_path / "new.h5", ds.grid, ds.read(np.arange(40)), np.zeros((40, ds.n_pixels), "u1"), cat)
    on_map = predict(model, sets, tmp_path / "a.fits", map_path=tmp_path / "map.h5", progress=False)
    placed = predict(model, new, tmp_path / "b.fits", map_path=tmp_path / "map.h5", progress=False)
    a, b = Table.read(on_map), Table.read(placed)
    assert list(a["INNER"]) == list(np.asarray(m.table["INNER"], bool))
    assert list(a["OUTLIER"]) == list(np.asarray(m.table["OUTLIER"], bool))
    expected = m.flag(ds.read(np.arange(40)))
    assert list(b["INNER"]) == list(expected["INNER"]) and list(b["OUTLIER"]) == list(expected["OUTLIER"])
    # copies of training spectra land next to the training set
    assert np.mean(b["INNER"][np.asarray(cat["SET"]) == "train"]) > 0.8
