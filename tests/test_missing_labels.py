"""Missing labels in training (peers: a loss that skips them, as astroNN's): a star without one label
still trains on the others, instead of being dropped; `select --partial-abundances` makes such stars."""

import numpy as np
import pytest
from astropy.table import Table

from starlabel.labels import LabelSet, QualityCuts
from toys import LABELS, TOY_GRID, make_sets, toy_spectra


def test_label_scaling_ignores_missing_values():
    v = np.array([[5000.0, 2.0], [6000.0, np.nan], [7000.0, 4.0]])
    ls = LabelSet.fit(("TEFF", "LOGG"), v)
    assert ls.mean == pytest.approx((6000.0, 3.0)) and ls.scale[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\['LOGG'\] have no known value"):
        LabelSet.fit(("TEFF", "LOGG"), np.column_stack([v[:, 0], np.full(3, np.nan)]))
    with pytest.raises(ValueError, match="inf"):
        LabelSet.fit(("TEFF", "LOGG"), np.where(np.isnan(v), np.inf, v))


def test_a_label_missing_for_half_the_stars_is_still_learned_and_never_read_as_a_value():
    import starlabel as sl

    flux, cat = toy_spectra(300, seed=4)
    y = np.column_stack([cat[n] for n in LABELS])
    train_rows, held = np.arange(240), np.arange(240, 300)
    gappy = y[train_rows].copy()
    gappy[::2, 2] = np.nan  # half the training stars have no [Fe/H]
    cfg = sl.preset("quick", runs=1, keep=1, max_epochs=8, patience=3, batch_size=16, learning_rate=5e-3)
    ens = sl.Ensemble.fit(flux[train_rows], gappy, names=LABELS, grid=TOY_GRID, config=cfg, seed=0)
    pred = ens.predict(flux[held]).mean
    assert np.all(np.isfinite(pred))
    # learned from the other half: [Fe/H] follows the truth on stars it never saw
    assert np.corrcoef(pred[:, 2], y[held, 2])[0, 1] > 0.9
    # a missing value is not read as one: had the gaps counted as the mean they are stored as, half the
    # targets would sit there and the slope of prediction on truth would fall towards 0.5
    assert np.polyfit(y[held, 2], pred[:, 2], 1)[0] > 0.8


def test_train_keeps_rows_missing_some_labels_and_drops_rows_missing_all(tmp_path, caplog):
    from starlabel.io.dataset import Dataset, write_dataset
    from starlabel.stages.train import load_training_data

    ds = Dataset(make_sets(tmp_path / "S.h5", n=40))
    cat = ds.catalogue
    cat["FE_H"][[1, 2]] = np.nan
    for n in LABELS:
        cat[n][5] = np.nan
    path = write_dataset(tmp_path / "gappy.h5", ds.grid, ds.read(), np.zeros((40, ds.grid.n_pixels), "u1"), cat)
    with caplog.at_level("INFO", logger="starlabel"):
        flux, y, cnames, rows, n_drop = load_training_data(Dataset(path), LABELS)
    assert n_drop == 1 and 5 not in rows and {1, 2} <= set(rows)
    assert np.isnan(y[list(rows).index(1), 2]) and len(flux) == 39
    assert "2 training rows miss some labels (FE_H 2)" in caplog.text


def _catalogue():
    base = dict(SNR=50.0, E_TEFF=100.0, E_LOGG=0.1, E_FE1=0.1, E_MG1=0.1, E_AL1=0.1, TECH="", PECULI="",
                VSINI=5.0, FEH=-0.45, FE1=7.0, MG1=7.38, AL1=6.0, TEFF=5000.0, LOGG=3.0)
    rows = [dict(base, CNAME="good"), dict(base, CNAME="bad_al", E_AL1=0.5), dict(base, CNAME="no_mg", E_MG1=np.nan),
            dict(base, CNAME="bad_fe", E_FE1=0.5)]
    return Table(rows=rows)


def test_partial_abundances_keep_the_star_and_blank_only_its_unusable_label(tmp_path):
    from starlabel.grid import Grid, Setup
    from starlabel.io.dataset import Dataset, write_dataset
    from starlabel.stages.select import select

    grid = Grid((Setup("A", 5000.0, 5001.0, 0.1),))
    flux = np.ones((4, grid.n_pixels), "f4")
    src = write_dataset(tmp_path / "d.h5", grid, flux, np.zeros_like(flux, "u1"), _catalogue())
    paper, _ = select(src, tmp_path / "paper.h5")
    assert list(Dataset(paper).catalogue["SET"]) == ["train", "observed", "observed", "observed"]
    partial, report = select(src, tmp_path / "partial.h5", QualityCuts(partial_abundances=True))
    cat = Dataset(partial).catalogue
    assert list(cat["SET"]) == ["train", "train", "train", "observed"]  # [Fe/H] still has to pass
    assert np.isnan(cat["AL_FE"][1]) and np.isfinite(cat["MG_FE"][1])
    assert np.isnan(cat["MG_FE"][2]) and np.isfinite(cat["AL_FE"][2])
    assert np.isfinite(cat["AL_FE"][3])  # an observed star keeps its catalogue labels as a reference
    assert any(name.startswith("E_FE1 <=") for name, _, _ in report)


def test_select_command_takes_partial_abundances(tmp_path, capsys):
    from starlabel.cli import main
    from starlabel.grid import Grid, Setup
    from starlabel.io.dataset import Dataset, write_dataset

    grid = Grid((Setup("A", 5000.0, 5001.0, 0.1),))
    flux = np.ones((4, grid.n_pixels), "f4")
    src = write_dataset(tmp_path / "d.h5", grid, flux, np.zeros_like(flux, "u1"), _catalogue())
    assert main(["select", str(src), "--out", str(tmp_path / "s.h5"), "--partial-abundances"]) == 0
    assert "AL_FE missing or failing the abundance error cut: 1" in capsys.readouterr().out
    assert list(Dataset(tmp_path / "s.h5").catalogue["SET"]).count("train") == 3
