"""Validation analyses (paper Sect. 5) on a mock survey with known truth, and on the real GES reference tables.

Training a CNN in a test would take minutes, so the "CNN" labels here are the mock's TRUE labels
plus small Gaussian noise (NOISE below) — this checks the analyses (membership, clustering, orbits,
statistics), not a network. The real-catalogue tests use catalogue labels as the "CNN" column.
"""

import numpy as np
import pytest
from astropy.table import Table

from starlabel.labels import QualityCuts, add_relative_labels, float_column
from starlabel.stages.select import apply_cuts
from starlabel.mock.population import GLOBULAR_CLUSTERS, mock_isochrone_ages, seismic_subset
from starlabel.mock.survey import plan_survey
from starlabel.validation import (ClusterCuts, MissingColumnError, OrbitSettings, ages, benchmarks, cluster_centres,
                                clusters, discs, observed, orbits, read_ages, seismic)
from starlabel.validation.common import strings

NOISE = {"TEFF": 60.0, "LOGG": 0.1, "FE_H": 0.05, "MG_FE": 0.03, "AL_FE": 0.05}


def mock_labels(truth, cat, seed=0, inner_fraction=0.85):
    """A stand-in for predict's LABELS.fits: truth + NOISE for the spectra select keeps (S/N >= 10)."""
    c = add_relative_labels(cat.copy())
    train, _ = apply_cuts(c, QualityCuts())
    snr = float_column(c, "SNR")
    keep = train | (snr >= 10)
    rng = np.random.default_rng(seed)
    lab = Table({"CNAME": cat["CNAME"][keep], "SET": np.where(train[keep], "train", "observed"), "SNR": snr[keep]})
    for k, s in NOISE.items():
        lab[f"{k}_CNN"] = np.asarray(truth[k], float)[keep] + rng.normal(0, s, keep.sum())
        lab[f"E_{k}_CNN"] = np.full(keep.sum(), s)
    lab["INNER"] = rng.random(keep.sum()) < inner_fraction
    return lab


@pytest.fixture(scope="module")
def mock():
    truth, cat = plan_survey(3000, seed=3)
    return truth, cat, mock_labels(truth, cat)


# ------------------------------------------------------------------ the mock survey's validation inputs

def test_benchmark_epochs_share_a_name_with_own_cnames(mock):
    truth, cat, _ = mock
    bm = np.char.find(strings(cat["GES_TYPE"]), "BM") >= 0
    names, counts = np.unique(strings(cat["OBJECT"])[bm], return_counts=True)
    assert len(names) >= 20 and np.all(counts == 4)  # the star + 3 epochs
    assert len(set(strings(cat["CNAME"]))) == len(cat)
    for n in names[:5]:
        m = bm & (strings(cat["OBJECT"]) == n)
        ra, dec = np.asarray(cat["RA"][m], float), np.asarray(cat["DEC"][m], float)
        sep = np.hypot((ra - ra[0]) * np.cos(np.radians(dec[0])), dec - dec[0]) * 3600
        assert sep.max() < 0.2  # arcsec: one CNAME digit
        assert np.ptp(np.asarray(cat["SNR"][m])) > 1 and np.ptp(np.asarray(cat["VRAD"][m])) > 0


def test_new_validation_draws_leave_the_survey_unchanged():
    t0, c0 = plan_survey(1000, seed=1, benchmark_epochs=0)
    t1, c1 = plan_survey(1000, seed=1)
    assert len(t1) == len(t0) + 3 * np.sum(t0["POP"] == "benchmark")
    for col in ("TEFF", "FEH", "SNR", "VRAD", "PARALLAX"):
        assert np.array_equal(np.asarray(c1[col][: len(c0)]), np.asarray(c0[col]), equal_nan=True)
    assert len(plan_survey(300, seed=1)[0]) == 300  # small test surveys keep exactly n_stars rows


def test_seismic_subset_is_precise_giants(mock):
    truth, _, _ = mock
    s = seismic_subset(truth, 3)
    assert {"CNAME", "LOGG", "E_LOGG"} <= set(s.colnames) and len(s) > 100
    assert np.all((s["E_LOGG"] >= 0.01) & (s["E_LOGG"] <= 0.03))
    k = np.searchsorted(np.asarray(truth["CNAME"]), np.asarray(s["CNAME"]), sorter=np.argsort(truth["CNAME"]))
    true = np.asarray(truth["LOGG"])[np.argsort(truth["CNAME"])][k]
    assert np.all(true < 3.3) and np.std(np.asarray(s["LOGG"]) - true) < 0.03


def test_shipped_cluster_table_matches_the_mock():
    t = cluster_centres()
    assert list(t["NAME"]) == [g[0] for g in GLOBULAR_CLUSTERS]
    for row, g in zip(t, GLOBULAR_CLUSTERS):
        assert (row["RA"], row["DEC"], row["FE_H"], row["RV"]) == pytest.approx((g[1], g[2], g[4], g[5]))
        assert row["RADIUS_DEG"] > 0


# ------------------------------------------------------------------ analyses on the mock (truth + noise as "CNN")

def test_benchmarks_group_repeats_and_measure_bias(mock):
    _, cat, lab = mock
    v = benchmarks(lab, cat)
    assert len(v.table) >= 20 and np.all(v.table["N_SPECTRA"] == 4)
    s = v.summary[(v.summary["group"] == "all")]
    teff = s[s["label"] == "TEFF"][0]
    # reference = catalogue labels (median of 4 high-S/N spectra), CNN = truth + 60 K noise (mean of 4)
    assert abs(teff["bias"]) < 40 and 10 < teff["scatter"] < 90
    assert 30 < teff["median_repeat_std"] < 90  # the repeat spread recovers the planted 60 K
    assert v.meta["reference"].startswith("catalogue")


def test_seismic_bias_scatter_and_flat_residuals(mock):
    truth, cat, lab = mock
    v = seismic(lab, cat, seismic_subset(truth, 3))
    cnn = v.summary[v.summary["source"] == "cnn"][0]
    assert cnn["n"] > 100 and abs(cnn["bias"]) < 0.03 and 0.07 < cnn["scatter"] < 0.13
    assert abs(cnn["residual_slope"]) < 4 * cnn["residual_slope_err"] + 0.02
    cat_row = v.summary[v.summary["source"] == "catalogue"][0]
    assert cat_row["n"] == cnn["n"] and np.isfinite(cat_row["scatter"])


def test_cluster_membership_and_mg_al_anticorrelation(mock):
    truth, cat, lab = mock
    v = clusters(lab, cat, truth=truth)
    s = v.summary
    assert s.meta["recall"] >= 0.9 and s.meta["precision"] >= 0.9
    big = s["n_members"] >= 15
    assert big.sum() >= 5 and np.all(s["sign_recovered"][big]) and np.all(s["rho_cnn"][big] < 0)
    assert np.all(s["slope_cnn"][big] < 0)
    assert v.meta["cut_rv_tol"] == 20.0 and "membership" in v.meta
    # tighter cuts lose members: the cuts are applied, not decorative
    tight = clusters(lab, cat, cuts=ClusterCuts(feh_tol=0.02))
    assert tight.summary["n_members"].sum() < s["n_members"].sum()


def test_discs_find_thin_and_thick_with_high_purity(mock):
    truth, cat, lab = mock
    v = discs(lab, cat, truth=truth)
    s = v.summary[v.summary["sample"] == "test+inner_snr_ge30"]
    thin, thick = s[s["population"] == "thin"][0], s[s["population"] == "thick"][0]
    assert thin["n"] > 100 and thick["n"] > 30
    assert thick["mgfe_mean"] > thin["mgfe_mean"] + 0.15
    assert thin["purity"] >= 0.9 and thin["purity_population"] >= 0.9 and thick["purity_population"] >= 0.9
    assert 0.05 < thin["unassigned_fraction"] < 0.6
    assert thick["true_age_mean"] > thin["true_age_mean"]


@pytest.fixture(scope="module")
def disc_populations(mock):
    truth, cat, lab = mock
    return discs(lab, cat, truth=truth).table


@pytest.mark.slow
def test_orbits_thick_disc_is_more_eccentric(mock, disc_populations):
    """A short integration (1 Gyr, 201 steps) of every 4th disc star keeps this test quick."""
    _, cat, lab = mock
    sub = disc_populations[::4]
    v = orbits(lab, cat, sub, OrbitSettings(integrate_gyr=1.0, n_steps=201))
    s = {r["population"]: r for r in v.summary}
    assert s["thick"]["ecc_mean"] > s["thin"]["ecc_mean"] + 0.05
    assert np.isfinite(s["thin"]["slope_ecc_feh"]) and np.isfinite(s["thick"]["slope_err"])
    assert v.meta["n_dropped_parallax"] > 0 and np.all(np.isfinite(v.table["ECC"]))
    assert np.all((v.table["ECC"] >= 0) & (v.table["ECC"] < 1))


def test_ages_adapter_and_turn_off_means(mock, disc_populations):
    truth, cat, lab = mock
    unidam = mock_isochrone_ages(truth, 3)
    a = read_ages(unidam)
    k = np.argsort(truth["CNAME"])
    true = np.asarray(truth["AGE"])[k][np.searchsorted(np.asarray(truth["CNAME"])[k], np.asarray(a["CNAME"]))]
    assert np.median(np.abs(np.log10(a["AGE"] / true))) < 0.1  # log10(yr) → Gyr
    assert np.allclose(a["E_AGE"], a["AGE"] * np.log(10) * 0.08)
    v = ages(lab, cat, unidam, disc_populations)
    s = {r["population"]: r for r in v.summary}
    assert s["thin"]["n"] > 20 and s["thick"]["n"] > 5
    assert s["thick"]["age_mean"] > s["thin"]["age_mean"] + 2  # mock: thin 0.5–10, thick 9–12.5 Gyr
    assert np.all(v.table["LOGG_CNN"] >= 3.7) and np.all(v.table["TEFF_CNN"] >= 5500)
    generic = ages(lab, cat, Table({"CNAME": a["CNAME"], "AGE": a["AGE"]}), disc_populations)
    assert len(generic.table) >= len(v.table)  # no errors: nothing dropped for precision


def test_observed_accuracy_by_reason(mock):
    truth, cat, lab = mock
    v = observed(lab, cat, truth)
    s = v.summary
    groups = set(s["group"])
    assert {"fails cut: S/N >= 30", "fails cut: no TECH/PECULI flag", "all observed"} <= groups
    row = s[(s["group"] == "fails cut: S/N >= 30") & (s["region"] == "all") & (s["label"] == "TEFF")][0]
    assert row["n"] > 100 and abs(row["scatter_truth"] - 60) < 10  # the planted noise
    assert row["scatter_catalogue"] > row["scatter_truth"]  # the catalogue is noisier at low S/N
    assert {"inner", "outer"} <= set(s["region"])


# ------------------------------------------------------------------ errors and NaNs

@pytest.mark.parametrize("drop, call", [
    ("VRAD", lambda lab, cat, truth: clusters(lab, cat)),
    ("PARALLAX", lambda lab, cat, truth: orbits(lab, cat)),
    ("GES_TYPE", lambda lab, cat, truth: benchmarks(lab, cat)),
])
def test_missing_catalogue_column_is_named(mock, drop, call):
    truth, cat, lab = mock
    with pytest.raises(MissingColumnError, match=drop):
        call(lab, cat[[c for c in cat.colnames if c != drop]], truth)


def test_missing_label_and_table_columns_are_named(mock):
    truth, cat, lab = mock
    with pytest.raises(MissingColumnError, match="MG_FE_CNN"):
        discs(lab[[c for c in lab.colnames if c != "MG_FE_CNN"]], cat)
    with pytest.raises(MissingColumnError, match="LOGG"):
        seismic(lab, cat, Table({"CNAME": ["x"]}))
    with pytest.raises(MissingColumnError, match="AGE"):
        read_ages(Table({"CNAME": ["x"], "T": [1.0]}))
    with pytest.raises(MissingColumnError, match="VSINI"):
        observed(lab, cat[[c for c in cat.colnames if c != "VSINI"]], truth)
    with pytest.raises(MissingColumnError, match="POP"):
        discs(lab, cat, truth=truth[["CNAME", "TEFF"]])


def test_nan_labels_do_not_break_the_analyses(mock):
    truth, cat, lab = mock
    lab = lab.copy()
    for c in ("TEFF_CNN", "LOGG_CNN", "FE_H_CNN", "MG_FE_CNN", "AL_FE_CNN"):
        lab[c][::7] = np.nan
    assert len(benchmarks(lab, cat).table) > 0
    assert clusters(lab, cat, truth=truth).summary.meta["recall"] >= 0.9
    assert len(discs(lab, cat).table) > 0
    assert np.isfinite(seismic(lab, cat, seismic_subset(truth, 3)).summary["bias"]).all()
    assert len(observed(lab, cat, truth).summary) > 0


# ------------------------------------------------------------------ real reference tables (shared data)

def _read(path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Table.read(path)


def test_benchmarks_on_the_real_ges_tables(shared_data):
    """GES × CoRoT master list benchmark rows (catalogue labels as the "CNN") against the iDR5 benchmark table."""
    master = _read(shared_data / "catalogues" / "ges_corot_masterlist.fits")
    ref = _read(shared_data / "catalogues" / "ges_idr5_benchmarks.fits")
    lab = Table({"CNAME": master["CNAME"], "TEFF_CNN": master["TEFF"], "LOGG_CNN": master["LOGG"],
                 "FE_H_CNN": master["FEH"]})
    v = benchmarks(lab, master, reference=ref, label_names=("TEFF", "LOGG", "FE_H"))
    assert len(v.table) >= 20 and v.table["N_SPECTRA"].max() >= 2  # UVES + GIRAFFE spectra of one star
    matched = np.isfinite(v.table["TEFF_REF"])
    assert matched.sum() >= 20
    s = v.summary[(v.summary["group"] == "all")]
    # the master list quotes the accepted benchmark parameters: the join must reproduce them
    teff = s[s["label"] == "TEFF"][0]
    assert abs(teff["bias"]) < 1 and teff["scatter"] < 1 and teff["n_stars"] >= 25
    assert abs(s[s["label"] == "LOGG"][0]["bias"]) < 0.01 and s[s["label"] == "FE_H"][0]["n_stars"] >= 30


def test_seismic_on_the_real_corot_master_list(shared_data):
    """The master list's LOGG of CoRoT giants is the seismic value; with it as the "CNN" column too,
    bias, scatter and slope must vanish, and the empty E_LOGG column must not drop rows."""
    master = _read(shared_data / "catalogues" / "ges_corot_masterlist.fits")
    corot = master[strings(master["GES_TYPE"]) == "CoRoT"]
    lab = Table({"CNAME": corot["CNAME"], "LOGG_CNN": corot["LOGG"]})
    v = seismic(lab, master, corot, type_value="CoRoT")
    cnn = v.summary[v.summary["source"] == "cnn"][0]
    assert cnn["n"] > 1000 and abs(cnn["bias"]) < 1e-6 and cnn["scatter"] < 1e-6
    assert abs(cnn["residual_slope"]) < 1e-6


# ------------------------------------------------------------------ the verb and the report

@pytest.mark.slow
def test_cli_validate_all_writes_tables_figures_and_report_section(tmp_path, capsys):
    import json

    from starlabel.cli import main
    from starlabel.stages.report import render

    truth, cat = plan_survey(1200, seed=4)
    lab = mock_labels(truth, cat, seed=4)
    survey = tmp_path / "survey"
    survey.mkdir()
    for name, t in (("truth", truth), ("catalogue", cat), ("seismic", seismic_subset(truth, 4)),
                    ("ages", mock_isochrone_ages(truth, 4))):
        t.write(survey / f"{name}.fits")
    lab.write(tmp_path / "labels.fits")
    out = tmp_path / "validate"
    args = ["validate", "all", str(tmp_path / "labels.fits"), str(survey / "catalogue.fits"), "--out", str(out),
            "--truth", str(survey / "truth.fits"), "--seismic", str(survey / "seismic.fits"),
            "--ages", str(survey / "ages.fits"), "--orbit-gyr", "1", "--orbit-steps", "101"]
    assert main(args) == 0
    result = json.loads((out / "validate.json").read_text())
    assert {k: v["status"] for k, v in result.items()} == {k: "done" for k in
                                                           ("benchmarks", "seismic", "clusters", "discs", "orbits",
                                                            "ages", "observed")}
    for name in ("benchmarks", "seismic", "clusters", "clusters_mgal", "discs", "orbits", "ages"):
        assert (out / f"{name}.png").stat().st_size > 5000, name
    clus = Table.read(out / "clusters_summary.csv")
    assert "rho_cnn" in clus.colnames and len(clus) == len(GLOBULAR_CLUSTERS)
    assert json.loads((out / "clusters_summary.meta.json").read_text())["cut_feh_tol"] == 0.3
    with _nowarn():
        hdr = Table.read(out / "orbits.fits").meta
    assert hdr["POTENTIAL"] == "galpy MWPotential2014" and hdr["INTEGRATE_GYR"] == 1.0
    page = render(tmp_path)
    assert "Science validation" in page and "Globular clusters (Figs. 15, 16)" in page and "rho_cnn" in page
    # one analysis without its input: a clear error, exit status 2
    assert main(["validate", "seismic", str(tmp_path / "labels.fits"), str(survey / "catalogue.fits"),
                 "--out", str(tmp_path / "v2")]) == 2
    assert "no seismic table" in capsys.readouterr().err


def _nowarn():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def cm():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    return cm()
