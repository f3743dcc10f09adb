"""Population sanity: every population present, thick disc α-rich and kinematically hot, GC spreads."""

import re

import numpy as np
import pytest

from starlabel.mock.population import BENCHMARKS, GLOBULAR_CLUSTERS, cname, draw_population


@pytest.fixture(scope="module")
def pop():
    return draw_population(4000, seed=11)


def test_populations_present(pop):
    pops = set(pop["POP"])
    assert pops == {"thin", "thick", "halo", "gc", "benchmark"}
    assert len(pop) == 4000
    gcs = set(pop["GES_FLD"][pop["POP"] == "gc"])
    assert len(gcs) >= 5 and gcs <= {g[0] for g in GLOBULAR_CLUSTERS}
    bench = set(pop["OBJECT"][pop["POP"] == "benchmark"])
    assert len(bench) >= 20 and {"SUN", "Arcturus", "HD122563", "HD140283"} <= bench


def test_label_ranges_and_kiel_sequences(pop):
    field = pop["POP"] != "benchmark"
    assert pop["TEFF"][field].min() >= 4000 and pop["TEFF"][field].max() <= 7000
    assert pop["LOGG"][field].min() >= 1.0 and pop["LOGG"][field].max() <= 4.9
    assert pop["FE_H"][field].min() >= -2.5 and pop["FE_H"][field].max() <= 0.5
    giants = pop["LOGG"] < 3.5
    assert 0.25 < giants.mean() < 0.7
    # giants: cooler at lower gravity (RGB slope)
    g = giants & (pop["POP"] == "thin")
    assert np.corrcoef(pop["TEFF"][g], pop["LOGG"][g])[0, 1] > 0.3


def test_thick_disc_alpha_rich_old_and_hot(pop):
    thin, thick, halo = (pop["POP"] == p for p in ("thin", "thick", "halo"))
    assert pop["MG_FE"][thick].mean() > pop["MG_FE"][thin].mean() + 0.15
    at = lambda m: m & (np.abs(pop["FE_H"] + 0.5) < 0.15)  # noqa: E731  two sequences at fixed [Fe/H]
    assert np.median(pop["MG_FE"][at(thick)]) - np.median(pop["MG_FE"][at(thin)]) > 0.15
    assert pop["AGE"][thick].mean() > pop["AGE"][thin].mean() + 3
    for v in ("V_R", "V_Z"):
        assert np.std(pop[v][thick]) > 1.7 * np.std(pop[v][thin])
        assert np.std(pop[v][halo]) > 1.5 * np.std(pop[v][thick])
    assert np.mean(pop["V_PHI"][thick]) < np.mean(pop["V_PHI"][thin]) - 20  # asymmetric drift
    assert np.std(pop["VRAD"][thick]) > np.std(pop["VRAD"][thin])


def test_globular_clusters_have_tight_feh_and_mg_al_anticorrelation(pop):
    for name in set(pop["GES_FLD"][pop["POP"] == "gc"]):
        m = pop["GES_FLD"] == name
        if m.sum() < 20:
            continue
        assert np.std(pop["FE_H"][m]) < 0.06
        assert np.ptp(pop["AL_FE"][m]) > 0.5
        assert np.corrcoef(pop["MG_FE"][m], pop["AL_FE"][m])[0, 1] < -0.3
        assert np.std(pop["VRAD"][m]) < 10  # one bulk velocity
        assert np.std(pop["PARALLAX"][m]) < 1e-6


def test_cnames_follow_ges_format_and_are_unique(pop):
    assert all(re.fullmatch(r"\d{8}[+-]\d{7}", c) for c in pop["CNAME"])
    assert len(set(pop["CNAME"])) == len(pop)
    # 18 Sco at its Gaia-ESO position (J2000, rounded like GES CNAMEs)
    assert cname(243.9060833, -8.3711667)[0] == "16153746-0822162"


def test_same_seed_same_population():
    a, b = draw_population(300, seed=3), draw_population(300, seed=3)
    assert np.array_equal(a["TEFF"], b["TEFF"]) and np.array_equal(a["CNAME"], b["CNAME"])
    assert not np.array_equal(a["TEFF"], draw_population(300, seed=4)["TEFF"])


def test_benchmark_table_is_complete():
    assert len(BENCHMARKS) >= 20
    assert all(np.isfinite(r[3]) and np.isfinite(r[4]) and np.isfinite(r[5]) for r in BENCHMARKS)
