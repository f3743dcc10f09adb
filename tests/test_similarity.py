"""Similarity map: separation, outlier screening, placing new spectra, determinism, storage, CLI."""

import numpy as np
import pytest
from astropy.table import Table
from scipy.spatial import cKDTree

from starlabel.similarity import MapSettings, SimilarityMap
from starlabel.stages.map import evaluate_inner_outer, outlier_cnames

N_PIX = 1200
FAST = dict(n_iter=250, n_jobs=1)


def toy_spectra(n, seed=0, group=0, snr=(30, 200)):
    """Continuum-normalised toy spectra: Gaussian lines whose depths follow two latent labels.

    Each group has its own line list, so two groups are as different as two kinds of star.
    """
    rng = np.random.default_rng(seed)
    lines = np.random.default_rng(100 + group)
    centres = lines.uniform(5, N_PIX - 5, 80)
    base = lines.uniform(0.05, 0.6, 80)
    sens = lines.normal(0, 1, (80, 2))
    theta = rng.uniform(-1, 1, (n, 2))
    depth = np.clip(base * np.exp(0.4 * theta @ sens.T), 0, 0.9)
    x = np.arange(N_PIX)
    profiles = np.exp(-0.5 * ((x[None, :] - centres[:, None]) / 2.0) ** 2)
    flux = 1 - np.clip(depth @ profiles, 0, 0.98)
    s = np.exp(rng.uniform(*np.log(snr), n))
    flux += rng.normal(0, 1, flux.shape) / s[:, None]
    return flux.astype(np.float32), theta, s


def plant_defects(flux, rows, seed=1, strength=1.0):
    """Emission lines in the first half of `rows`, a wrong continuum in the rest."""
    rng = np.random.default_rng(seed)
    x = np.arange(flux.shape[1])
    flux = flux.copy()
    half = len(rows) // 2
    for r in rows[:half]:
        c = rng.uniform(50, N_PIX - 50)
        flux[r] += 0.5 * strength * np.exp(-0.5 * ((x - c) / 2.5) ** 2)
    for r in rows[half:]:
        u = x / N_PIX - 0.5
        flux[r] *= 1 + rng.choice([-1, 1]) * 0.1 * strength * u
    return flux


@pytest.fixture(scope="module")
def two_groups():
    a, ta, sa = toy_spectra(150, seed=1, group=0)
    b, tb, sb = toy_spectra(150, seed=2, group=1)
    flux = np.vstack([a, b])
    group = np.r_[np.zeros(150, int), np.ones(150, int)]
    is_train = np.r_[np.arange(150) % 2 == 0, np.arange(150) % 2 == 0]
    m = SimilarityMap.fit(flux, is_train, MapSettings(seed=3, **FAST))
    return m, flux, group, is_train


def test_map_separates_two_groups(two_groups):
    m, _, group, _ = two_groups
    _, idx = cKDTree(m.embedding).query(m.embedding, k=6)
    purity = np.mean(group[idx[:, 1:]] == group[:, None])
    assert purity > 0.99
    # and the groups' centres are far apart compared with their own size
    ca, cb = (m.embedding[group == g].mean(0) for g in (0, 1))
    spread = np.mean([m.embedding[group == g].std(0).mean() for g in (0, 1)])
    assert np.linalg.norm(ca - cb) > 2 * spread


def test_same_seed_same_map(two_groups):
    m, flux, _, is_train = two_groups
    again = SimilarityMap.fit(flux, is_train, MapSettings(seed=3, **FAST))
    np.testing.assert_array_equal(again.embedding, m.embedding)
    np.testing.assert_array_equal(np.asarray(again.table["OUTLIER"]), np.asarray(m.table["OUTLIER"]))


def test_planted_outliers_are_flagged():
    flux, _, _ = toy_spectra(400, seed=5)
    bad = np.arange(0, 400, 50)  # 8 defects: 4 emission lines (0.75 high), 4 continua tilted by 15 %
    flux = plant_defects(flux, bad, strength=1.5)
    m = SimilarityMap.fit(flux, np.ones(400, bool), MapSettings(seed=0, **FAST))
    out = np.asarray(m.table["OUTLIER"])
    normal = np.setdiff1d(np.arange(400), bad)
    assert out[bad].all(), m.table[bad]["LINE_Z", "BROAD_Z", "KNN_Z"]
    assert out[normal].mean() <= 0.02
    assert all(m.table["REASON"][bad])  # every flag says which score fired
    # the same defects are caught in spectra that are only placed onto the map
    new = plant_defects(toy_spectra(20, seed=6)[0], np.arange(0, 20, 5), seed=7, strength=3.0)
    flags = m.scores(new)["OUTLIER"]
    assert np.asarray(flags)[::5].all() and not np.asarray(flags)[1::5].any()


def test_transform_places_copy_next_to_original(two_groups):
    m, flux, group, _ = two_groups
    rows = np.array([3, 40, 160, 290])
    pos = m.transform(flux[rows])
    _, nearest = cKDTree(m.embedding).query(pos, k=5)
    assert all(r in n for r, n in zip(rows, nearest))
    # the map does not move
    assert m.embedding.shape == (300, 2)


def test_inner_outer_and_flag(two_groups):
    m, flux, group, is_train = two_groups
    inner = np.asarray(m.table["INNER"])
    assert not inner[is_train].any()
    assert inner[~is_train].mean() > 0.9  # training and observed spectra come from the same groups
    # a third, unrelated kind of spectrum is outer and (being unlike anything) an outlier
    other = toy_spectra(3, seed=9, group=7)[0]
    f = m.flag(np.vstack([flux[:2], other]))
    assert set(f) >= {"INNER", "OUTLIER"}
    assert f["INNER"][:2].all() and not f["INNER"][2:].any()
    assert f["OUTLIER"][2:].all()


def test_save_load_roundtrip_and_outlier_cnames(tmp_path, two_groups):
    m, flux, _, _ = two_groups
    t = m.table
    t["CNAME"] = [f"S{i:04d}" for i in range(len(t))]
    t["OUTLIER"][[5, 7]] = True
    path = m.save(tmp_path / "map.h5")
    back = SimilarityMap.load(path)
    np.testing.assert_array_equal(back.embedding, m.embedding)
    np.testing.assert_array_equal(back.coords, m.coords)
    assert back.inner_distance == m.inner_distance and back.settings == m.settings
    assert outlier_cnames(path) == list(np.asarray(t["CNAME"])[np.asarray(t["OUTLIER"])])
    np.testing.assert_allclose(back.transform(flux[:3]), m.transform(flux[:3]), rtol=1e-4, atol=1e-4)
    t["OUTLIER"][[5, 7]] = False
    with pytest.raises(FileNotFoundError):
        SimilarityMap.load(tmp_path / "nope.h5")


@pytest.mark.slow
def test_cli_end_to_end_and_evaluation(tmp_path):
    from starlabel.cli import main
    from starlabel.grid import Grid, Setup
    from starlabel.io.dataset import write_dataset

    a, ta, sa = toy_spectra(300, seed=11, group=0)
    b, tb, sb = toy_spectra(40, seed=12, group=3)
    flux = plant_defects(np.vstack([a, b]), np.array([0, 1]), strength=3.0)
    n = len(flux)
    cat = Table({"CNAME": [f"C{i:04d}" for i in range(n)], "SNR": np.r_[sa, sb],
                 "SET": np.where(np.arange(n) < 200, "train", "observed"),
                 "TEFF": 5000 + 500 * np.r_[ta[:, 0], tb[:, 0] * 3], "LOGG": 3 + np.r_[ta[:, 1], tb[:, 1] * 3],
                 "FE_H": np.r_[ta[:, 0], tb[:, 0]] * 0.5})
    grid = Grid((Setup("TOY", 5000.0, 5000.0 + 0.1 * (N_PIX - 1), 0.1),))
    sets = write_dataset(tmp_path / "sets.h5", grid, flux, np.zeros(flux.shape, np.uint8), cat)
    out = tmp_path / "map.h5"
    assert main(["map", str(sets), "--out", str(out), "--jobs", "1", "--seed", "1"]) == 0
    for name in ("map.h5", "map_outliers.csv", "map_labels.png", "map_inner_outer.png", "map_outliers.png"):
        assert (tmp_path / name).exists(), name
    m = SimilarityMap.load(out)
    assert {"C0000", "C0001"} <= set(outlier_cnames(out))
    s = m.summary()
    assert s["n_inner"] + s["n_outer"] == 140
    # group 3 (observed only) lies away from the training set and has out-of-range labels
    outer_other = ~np.asarray(m.table["INNER"])[300:]
    assert outer_other.mean() > 0.9
    assert s["out_of_limits"]["inner"] < s["out_of_limits"]["outer"]
    # Fig. 9 table from a predict-like LABELS file (perfect CNN on inner, biased on outer)
    pred = Table({"CNAME": cat["CNAME"]})
    for lab in ("TEFF", "LOGG", "FE_H"):
        pred[f"{lab}_CNN"] = np.where(np.asarray(m.table["INNER"]), cat[lab], cat[lab] + 1.0)
    pred.write(tmp_path / "labels.fits")
    tab = evaluate_inner_outer(tmp_path / "labels.fits", out, labels=("TEFF", "LOGG", "FE_H"))
    row = lambda s, lab: tab[(tab["SET"] == s) & (tab["LABEL"] == lab)][0]  # noqa: E731
    assert row("outer", "TEFF")["BIAS"] == pytest.approx(1.0)
    assert row("inner S/N>=30", "LOGG")["SCATTER"] == pytest.approx(0.0)
