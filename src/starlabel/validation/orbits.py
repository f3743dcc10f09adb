"""Orbits (paper Sect. 5.4, Fig. 18): eccentricity against [Fe/H] per disc population with galpy.

Orbits are integrated for 5 Gyr in galpy's `MWPotential2014` from the catalogue's RA, DEC,
PARALLAX, PMRA, PMDEC and VRAD (as the paper, from Gaia EDR3 astrometry), with galpy's C
integrator ('dop853_c', relative tolerance 1e-6) over one vectorised `Orbit` array per chunk of `chunk` stars (one array
for the usual sample; chunks bound the memory of the stored time steps). Stars with a
non-positive parallax or σϖ/ϖ > `max_rel_parallax_error` are dropped, as in the paper; the
distance is 1/ϖ. The eccentricity is galpy's (r_apo − r_peri)/(r_apo + r_peri) from the
integrated orbit. The Sun's position and motion default to astropy's Galactocentric frame (the
mock survey's), R0 = 8.122 kpc, z0 = 20.8 pc, v_sun = (12.9, 245.6, 7.78) km/s, with the
potential scaled to v_c = 232.8 km/s.

Per population (from `discs`: thin/thick, or any CNAME + POPULATION table) a straight-line fit of
e against the CNN [Fe/H] (paper: thick −0.26, thin +0.02) and the mean e.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from astropy.table import Table

from .common import Validation, fcol, join, linear_fit, require, strings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrbitSettings:
    integrate_gyr: float = 5.0
    n_steps: int = 1001  # stored time steps (the C integrator adapts its own step between them)
    max_rel_parallax_error: float = 0.2
    chunk: int = 2500  # stars per Orbit array
    ro: float = 8.122  # kpc
    zo: float = 0.0208  # kpc
    vo: float = 232.8  # km/s
    solarmotion: tuple[float, float, float] = (-12.9, 245.6 - 232.8, 7.78)  # galpy's [-U, V, W] w.r.t. vo
    method: str = "dop853_c"
    # dop853_c tolerances: galpy's defaults are ~3.6x slower; on 200 mock stars over 5 Gyr these change
    # e by at most 7e-4 (benchmarks/bench_orbits.py; None = galpy's default)
    rtol: float | None = 1e-6
    atol: float | None = 1e-8
    numcores: int = 1


def eccentricities(ra, dec, parallax, pmra, pmdec, vrad, settings: OrbitSettings = OrbitSettings()) -> np.ndarray:
    """Orbital eccentricity of each star (NaN where the input is not finite)."""
    import astropy.units as u
    from galpy.orbit import Orbit
    from galpy.potential import MWPotential2014

    cols = [np.asarray(c, float) for c in (ra, dec, parallax, pmra, pmdec, vrad)]
    ok = np.all([np.isfinite(c) for c in cols], axis=0) & (cols[2] > 0)
    e = np.full(len(cols[0]), np.nan)
    idx = np.flatnonzero(ok)
    ts = np.linspace(0, settings.integrate_gyr, settings.n_steps) * u.Gyr
    for i in range(0, len(idx), settings.chunk):
        k = idx[i : i + settings.chunk]
        vxvv = np.column_stack([cols[0][k], cols[1][k], 1.0 / cols[2][k], cols[3][k], cols[4][k], cols[5][k]])
        o = Orbit(vxvv, radec=True, ro=settings.ro, zo=settings.zo, vo=settings.vo,
                  solarmotion=list(settings.solarmotion))
        with warnings.catch_warnings():  # galpy announces its C integrator on every call
            warnings.filterwarnings("ignore", message="Using C implementation")
            o.integrate(ts, MWPotential2014, method=settings.method, numcores=settings.numcores, progressbar=False,
                        rtol=settings.rtol, atol=settings.atol)
        e[k] = o.e()
    return e


def orbits(labels: Table, catalogue: Table, populations: Table | None = None,
           settings: OrbitSettings = OrbitSettings()) -> Validation:
    """One row per integrated star (eccentricity, population); per-population fit of e vs [Fe/H]_CNN.

    `populations`: CNAME + POPULATION (e.g. `discs(...).table`, the clean sample); without it every
    labelled star is integrated and grouped as 'all'."""
    need = ["RA", "DEC", "PARALLAX", "PMRA", "PMDEC", "VRAD"]
    require(catalogue, need, "the catalogue", "orbits")
    require(labels, ["FE_H_CNN"], "the labels table", "orbits")
    j = join(labels, catalogue, "orbits", need + [c for c in ("E_PARALLAX",) if c in catalogue.colnames])
    cname = strings(j["CNAME"])
    pop = np.full(len(j), "all", dtype="<U12")
    if populations is not None:
        require(populations, ["CNAME", "POPULATION"], "the populations table", "orbits")
        if "SAMPLE" in populations.colnames:  # discs output: the clean sample only
            populations = populations[strings(populations["SAMPLE"]) == strings(populations["SAMPLE"])[0]]
        from ..io.tables import index_of

        k = index_of(cname, strings(populations["CNAME"]))
        pop = np.where(k >= 0, strings(populations["POPULATION"])[np.maximum(k, 0)], "")
    plx, e_plx = fcol(j, "CAT_PARALLAX"), fcol(j, "CAT_E_PARALLAX")
    with np.errstate(invalid="ignore", divide="ignore"):
        good_plx = (plx > 0) & ~(e_plx / plx > settings.max_rel_parallax_error)
    use = good_plx & (pop != "") & ~np.isin(pop, ("noise", "other"))
    n_in = int(np.sum((pop != "") & ~np.isin(pop, ("noise", "other"))))
    t0 = time.perf_counter()
    ecc = eccentricities(*(fcol(j, f"CAT_{c}")[use] for c in need), settings=settings)
    seconds = time.perf_counter() - t0
    log.info("integrated %d orbits in %.1f s", int(use.sum()), seconds)
    table = Table({"CNAME": cname[use], "POPULATION": pop[use], "FE_H_CNN": fcol(j, "FE_H_CNN")[use],
                   "PARALLAX": plx[use], "ECC": ecc})
    rows = []
    for p in dict.fromkeys(table["POPULATION"]):
        m = np.asarray(table["POPULATION"]) == p
        slope, err, icpt, n = linear_fit(table["FE_H_CNN"][m], table["ECC"][m])
        e = np.asarray(table["ECC"][m], float)
        rows.append({"population": str(p), "n": n, "ecc_mean": float(np.nanmean(e)) if np.isfinite(e).any() else np.nan,
                     "ecc_median": float(np.nanmedian(e)) if np.isfinite(e).any() else np.nan,
                     "slope_ecc_feh": slope, "slope_err": err, "intercept": icpt})
    meta = {"analysis": "orbits", "potential": "galpy MWPotential2014", **asdict(settings),
            "parallax_cut": f"PARALLAX > 0 and E_PARALLAX/PARALLAX <= {settings.max_rel_parallax_error}",
            "n_candidates": n_in, "n_dropped_parallax": int(n_in - use.sum()), "seconds": round(seconds, 1),
            "fit": "ECC = intercept + slope [Fe/H]_CNN"}
    return Validation("orbits", table, Table(rows=rows), meta)
