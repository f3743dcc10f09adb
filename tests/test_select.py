"""Labels, abundance conversion, quality cuts and the select stage on a hand-made dataset."""

import numpy as np
import pytest
from astropy.table import Table

from starlabel.grid import Grid, Setup
from starlabel.io.dataset import Dataset, write_dataset
from starlabel.labels import LabelSet, QualityCuts, add_relative_labels, fe_h, x_fe
from starlabel.stages.select import apply_cuts, select


def test_abundance_conversion_matches_hand_values():
    # A(Fe)=7.00 → [Fe/H]=7.00−7.45=−0.45; A(Mg)=7.38 → [Mg/Fe]=7.38−7.53+0.45=+0.30
    assert fe_h(7.00) == pytest.approx(-0.45)
    assert x_fe(7.38, "Mg", -0.45) == pytest.approx(0.30)
    # A(Al)=6.00 → [Al/Fe]=6.00−6.37+0.45=+0.08
    t = Table({"FE1": [7.00], "MG1": [7.38], "AL1": [6.00]})
    add_relative_labels(t)
    assert t["FE_H"][0] == pytest.approx(-0.45)
    assert t["MG_FE"][0] == pytest.approx(0.30)
    assert t["AL_FE"][0] == pytest.approx(0.08)


def good_row(**over):
    row = dict(CNAME="x", SNR=50.0, E_TEFF=100.0, E_LOGG=0.1, E_FE1=0.1, E_MG1=0.1, E_AL1=0.1,
               TECH="", PECULI="", VSINI=5.0, FEH=-0.45, FE1=7.0, MG1=7.38, AL1=6.0)
    row.update(over)
    return row


@pytest.mark.parametrize("bad, cut", [
    (dict(SNR=29.9), "S/N"), (dict(E_TEFF=201.0), "E_TEFF"), (dict(E_LOGG=0.31), "E_LOGG"),
    (dict(E_AL1=0.21), "abundance"), (dict(TECH="10005-11-01-01"), "TECH"), (dict(PECULI="1010"), "PECULI"),
    (dict(VSINI=21.0), "VSINI"), (dict(FEH=-0.2), "FEH"),
])
def test_each_cut_removes_exactly_its_row(bad, cut):
    rows = [good_row(CNAME=f"g{i}") for i in range(4)] + [good_row(CNAME="bad", **bad)]
    t = Table(rows=rows)
    keep, report = apply_cuts(t, QualityCuts())
    assert list(keep) == [True] * 4 + [False]
    removing = [name for name, removed, _ in report if removed]
    assert len(removing) == 1 and cut in removing[0]


def test_label_scaling_roundtrip():
    v = np.array([[5000.0, 2.5], [6000.0, 4.5], [5500.0, 3.0]])
    ls = LabelSet.fit(("TEFF", "LOGG"), v)
    assert np.allclose(ls.from_network(ls.to_network(v)), v, atol=1e-3)
    assert LabelSet.from_dict(ls.to_dict()) == ls


def test_select_writes_train_and_observed(tmp_path):
    grid = Grid((Setup("A", 5000.0, 5001.0, 0.1),))
    rows = [good_row(CNAME="t1"), good_row(CNAME="t2"), good_row(CNAME="o1", SNR=15.0),
            good_row(CNAME="lo", SNR=5.0)]
    cat = Table(rows=rows)
    flux = np.random.default_rng(0).normal(1, 0.01, (4, grid.n_pixels)).astype("f4")
    src = write_dataset(tmp_path / "d.h5", grid, flux, np.zeros_like(flux, "u1"), cat)
    out, _ = select(src, tmp_path / "sets.h5")
    ds = Dataset(out)
    assert list(ds.catalogue["CNAME"]) == ["t1", "t2", "o1"]
    assert list(ds.catalogue["SET"]) == ["train", "train", "observed"]
    assert np.array_equal(ds.read(ds.rows(SET="observed")), flux[[2]])
    # outliers are excluded from training
    out2, _ = select(src, tmp_path / "sets2.h5", exclude_cnames=["t2"])
    assert list(Dataset(out2).catalogue["SET"]) == ["train", "observed", "observed"]
