"""A Milky Way-like mix of Gaia-ESO targets: true labels, positions and velocities.

Populations (fractions of the non-benchmark stars): thin disc 58 %, thick disc 20 %,
halo 8 %, globular clusters 14 % (seven real GES clusters, each its own GES_FLD), plus up to
24 Gaia FGK benchmark stars with literature parameters.

* **Kiel diagram**: an isochrone-like parametrisation. Dwarfs lie on a main sequence
  log g = 4.44 − 1.6e-4 (Teff − 5777) that bends up towards an age- and [Fe/H]-dependent
  turn-off; subgiants bridge the turn-off and the RGB base; giants follow
  Teff = 4700 + 330 (log g − 2.5) − 230 [Fe/H] (hotter when metal-poor); metal-rich giants
  pile up in a red clump at log g ≈ 2.4.
* **Chemistry**: low-α thin disc ([Mg/Fe] = 0.02 − 0.1 [Fe/H]); high-α thick disc
  ([Mg/Fe] ≈ 0.30 with a knee at [Fe/H] ≈ −0.6); halo [Mg/Fe] ≈ 0.3 with a low-α accreted
  part; [Al/Fe] follows [Mg/Fe] in the field; Si, Ca and Ti get 0.8 [Mg/Fe] ± 0.04. Clusters have σ[Fe/H] = 0.03 and a Mg–Al
  anticorrelation: polluted (second-generation) stars reach [Al/Fe] ≈ +1.2 and lose up to 0.4 dex Mg.
* **Kinematics**: Galactocentric velocities with population-dependent dispersions
  (σ_R, σ_φ, σ_z) and rotation (thin: 35/22/18 km/s, lag 10; thick: 65/45/42, lag 45;
  halo: 140/100/90, v_φ = 20 km/s), converted to RA/DEC, parallax, proper motions and RV with
  astropy.coordinates. The thick disc is therefore older, hotter and more eccentric.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

# (GES_FLD, RA, DEC, d/kpc, [Fe/H], RV, pmra, pmdec, Al spread amplitude) — Harris 2010, Baumgardt 2019
GLOBULAR_CLUSTERS = [
    ("NGC104", 6.024, -72.081, 4.5, -0.72, -17.2, 5.25, -2.53, 0.6),
    ("NGC362", 15.809, -70.849, 8.8, -1.26, 223.5, 6.69, -2.53, 0.8),
    ("NGC1851", 78.528, -40.047, 11.9, -1.18, 320.5, 2.12, -0.59, 0.8),
    ("NGC2808", 138.013, -64.864, 9.6, -1.14, 101.6, 1.00, 0.28, 1.2),
    ("NGC4590", 189.867, -26.744, 10.3, -2.23, -94.7, -2.75, 1.78, 1.0),
    ("NGC6752", 287.717, -59.985, 4.1, -1.54, -26.7, -3.16, -4.03, 1.1),
    ("NGC7078", 322.493, 12.167, 10.7, -2.37, -107.0, -0.66, -3.80, 1.1),
]

# Gaia FGK benchmarks (Heiter et al. 2015; Jofré et al. 2015, 2018; GES iDR5 compilation):
# name, RA, DEC, Teff, logg, [Fe/H], [Mg/Fe], [Al/Fe], VRAD, vsini, parallax, pmra, pmdec
BENCHMARKS = [
    ("SUN", 0.0, 0.0, 5771, 4.44, 0.03, 0.00, 0.00, 0.0, 1.6, np.nan, np.nan, np.nan),
    ("Arcturus", 213.915, 19.182, 4286, 1.60, -0.52, 0.37, 0.33, -5.19, 3.8, 88.83, -1093.39, -2000.06),
    ("HD122563", 210.632, 9.686, 4587, 1.61, -2.64, 0.35, -0.10, -26.58, 5.0, 4.22, -189.86, -69.67),
    ("HD140283", 235.745, -10.933, 5522, 3.58, -2.36, 0.30, -0.20, -169.0, 5.0, 17.16, -1114.93, -304.36),
    ("18_Sco", 243.905, -8.369, 5810, 4.44, 0.03, 0.00, -0.02, 11.79, 2.2, 71.94, 230.77, -495.53),
    ("alf_Cen_A", 219.902, -60.834, 5792, 4.31, 0.26, 0.00, 0.05, -21.4, 1.9, 754.81, -3679.25, 473.67),
    ("alf_Cen_B", 219.896, -60.838, 5231, 4.53, 0.22, 0.01, 0.08, -20.7, 1.0, 796.92, -3614.39, 802.98),
    ("bet_Gem", 116.329, 28.026, 4858, 2.90, 0.13, -0.03, 0.01, 3.23, 2.0, 96.54, -626.55, -45.80),
    ("bet_Hyi", 6.438, -77.254, 5873, 3.98, -0.04, 0.07, 0.03, 23.1, 3.3, 134.07, 2219.54, 324.09),
    ("bet_Vir", 177.674, 1.765, 6083, 4.10, 0.24, -0.04, -0.05, 4.71, 2.0, 91.50, 740.23, -270.43),
    ("del_Eri", 55.812, -9.763, 4954, 3.76, 0.06, 0.03, 0.10, -6.28, 0.7, 110.61, -93.16, 743.64),
    ("eps_Eri", 53.233, -9.458, 5076, 4.61, -0.09, -0.03, -0.05, 16.43, 2.4, 310.94, -975.17, 19.49),
    ("eps_Vir", 195.544, 10.959, 4983, 2.77, 0.15, 0.02, 0.05, -14.29, 2.0, 29.76, -273.80, 19.96),
    ("eta_Boo", 208.671, 18.398, 6099, 3.79, 0.32, -0.05, -0.02, -16.31, 12.7, 88.17, -60.95, -356.29),
    ("HD107328", 185.088, 3.313, 4496, 2.09, -0.33, 0.20, 0.14, 36.4, 1.9, 10.59, -292.95, -63.58),
    ("HD22879", 55.092, -3.217, 5868, 4.27, -0.86, 0.30, 0.18, 120.4, 4.4, 39.12, 689.15, -213.18),
    ("HD49933", 102.718, -0.546, 6635, 4.20, -0.41, 0.02, -0.05, -12.8, 10.0, 33.69, 22.09, -186.51),
    ("HD84937", 147.235, 13.745, 6356, 4.06, -2.03, 0.25, -0.25, -15.0, 5.2, 13.74, 373.05, -774.38),
    ("ksi_Hya", 173.251, -31.858, 5044, 2.87, 0.16, 0.04, 0.05, -4.9, 2.4, 25.16, -209.62, -40.84),
    ("mu_Leo", 148.191, 26.007, 4474, 2.51, 0.25, 0.05, 0.15, 13.63, 5.1, 26.28, -217.31, -54.26),
    ("Procyon", 114.825, 5.225, 6554, 4.00, 0.01, -0.03, -0.06, -3.2, 2.8, 284.56, -714.59, -1036.80),
    ("HD102200", 176.629, -46.142, 6155, 4.22, -1.12, 0.30, 0.05, 160.98, 1.9, 13.00, 60.32, -109.88),
    ("HD106038", 183.299, 13.564, 6121, 4.55, -1.25, 0.35, 0.10, 99.36, 0.0, 9.98, -216.24, -439.18),
    ("HD175305", 283.527, 74.730, 5059, 2.53, -1.29, 0.30, 0.10, -184.33, 5.0, 6.39, 319.44, 79.48),
    ("HD201891", 317.604, 17.728, 5948, 4.30, -0.97, 0.30, 0.10, -44.52, 2.9, 29.10, -122.95, -899.21),
    ("HD220009", 350.190, 5.381, 4275, 1.47, -0.74, 0.32, 0.25, 40.34, 1.0, 7.54, 78.47, -60.00),
]

FRACTIONS = {"thin": 0.58, "thick": 0.20, "halo": 0.08, "gc": 0.14}
# (σ_R, σ_φ, σ_z, rotation lag) km/s; halo rotates at 20 km/s
KINEMATICS = {"thin": (35.0, 22.0, 18.0, 10.0), "thick": (65.0, 45.0, 42.0, 45.0), "halo": (140.0, 100.0, 90.0, None)}
SCALE_HEIGHT = {"thin": 0.3, "thick": 0.9, "halo": 4.0}  # kpc
V_CIRC = 232.8  # km/s, astropy's default Galactocentric frame puts the Sun at 8.122 kpc


def _kiel(rng, n: int, feh: np.ndarray, age: np.ndarray, giant_frac: float):
    """(Teff, logg) on isochrone-like sequences; returns also a 'giant' flag."""
    teff, logg = np.empty(n), np.empty(n)
    u = rng.random(n)
    giant = u < giant_frac
    sub = (~giant) & (rng.random(n) < 0.15)
    dwarf = ~(giant | sub)
    # turn-off: hotter when young or metal-poor
    t_to = np.clip(6550 - 1000 * np.log10(np.maximum(age, 0.5) / 1.5) - 280 * feh, 5600, 7000)
    # main sequence, weighted towards the turn-off (magnitude-limited selection)
    x = rng.beta(2.2, 1.3, dwarf.sum())
    teff[dwarf] = 4000 + x * (t_to[dwarf] - 4000)
    evol = 0.35 * x**3  # MS stars rise off the ZAMS near the turn-off
    logg[dwarf] = 4.44 - 1.6e-4 * (teff[dwarf] - 5777) - evol + rng.normal(0, 0.05, dwarf.sum())
    # subgiants: from the turn-off (log g ≈ 4.0) to the RGB base (log g ≈ 3.5)
    s = rng.random(sub.sum())
    t_base = 5050 - 230 * feh[sub]
    teff[sub] = t_to[sub] * (1 - s) + t_base * s
    logg[sub] = 4.0 - 0.5 * s + rng.normal(0, 0.07, sub.sum())
    # giants: RGB (and red clump for [Fe/H] > -1)
    g = np.flatnonzero(giant)
    lg = rng.uniform(1.0, 3.6, g.size)
    clump = (rng.random(g.size) < 0.35) & (feh[g] > -1.0)
    lg[clump] = rng.normal(2.42, 0.08, clump.sum())
    t = 4700 + 330 * (lg - 2.5) - 230 * feh[g] + rng.normal(0, 60, g.size)
    t[clump] = 4750 - 200 * feh[g][clump] + rng.normal(0, 60, clump.sum())
    teff[g], logg[g] = t, lg
    return np.clip(teff, 4000, 7000), np.clip(logg, 1.0, 4.9), giant


def _chemistry(rng, pop: str, n: int):
    """([Fe/H], [Mg/Fe], [Al/Fe], age/Gyr) for a field population."""
    if pop == "thin":
        feh = np.clip(rng.normal(-0.08, 0.22, n), -1.0, 0.5)
        mg = 0.02 - 0.10 * feh + rng.normal(0, 0.03, n)
        age = rng.uniform(0.5, 10.0, n)
        al = 0.02 + 0.5 * mg + rng.normal(0, 0.05, n)
    elif pop == "thick":
        feh = np.clip(rng.normal(-0.55, 0.25, n), -1.5, 0.3)
        mg = 0.30 - 0.35 * np.clip(feh + 0.6, 0, None) + rng.normal(0, 0.035, n)
        age = rng.uniform(9.0, 12.5, n)
        al = 0.05 + 0.6 * mg + rng.normal(0, 0.05, n)
    else:  # halo: in-situ α-rich plus an accreted low-α component
        feh = np.clip(rng.normal(-1.5, 0.5, n), -2.5, -0.6)
        acc = rng.random(n) < 0.4
        mg = np.where(acc, 0.15, 0.32) + rng.normal(0, 0.05, n)
        al = np.where(acc, -0.20, 0.05) + rng.normal(0, 0.08, n)
        age = rng.uniform(10.5, 13.0, n)
    return feh, mg, al, age


def _to_sky(rng, x, y, z, pop: str, age):
    """Galactocentric positions (kpc) + population velocities → ICRS astrometry and RV."""
    import astropy.units as u
    from astropy.coordinates import CartesianDifferential, Galactocentric, ICRS, SkyCoord

    sr, sp, sz, lag = KINEMATICS[pop]
    heat = (np.maximum(age, 0.5) / 10.0) ** 0.33 if pop == "thin" else 1.0
    n = x.size
    phi = np.arctan2(y, x)
    v_r = rng.normal(0, sr * heat, n)
    v_rot = (20.0 if lag is None else V_CIRC - lag) + rng.normal(0, sp * heat, n)
    v_z = rng.normal(0, sz * heat, n)
    # disc rotation is towards +y at the Sun (x < 0), i.e. along (sin φ, −cos φ)
    vx = v_r * np.cos(phi) + v_rot * np.sin(phi)
    vy = v_r * np.sin(phi) - v_rot * np.cos(phi)
    gc = SkyCoord(x=x * u.kpc, y=y * u.kpc, z=z * u.kpc, frame=Galactocentric(),
                  differential_type=CartesianDifferential,
                  v_x=vx * u.km / u.s, v_y=vy * u.km / u.s, v_z=v_z * u.km / u.s)
    c = gc.transform_to(ICRS())
    return (c.ra.deg, c.dec.deg, 1.0 / c.distance.to_value(u.kpc), c.pm_ra_cosdec.to_value(u.mas / u.yr),
            c.pm_dec.to_value(u.mas / u.yr), c.radial_velocity.to_value(u.km / u.s), (v_r, v_rot, v_z))


def _positions(rng, pop: str, n: int, giant: np.ndarray):
    """Heliocentric (l, b, d) with d set by luminosity class and |z| by the scale height."""
    import astropy.units as u
    from astropy.coordinates import Galactic, Galactocentric, SkyCoord

    d = np.where(giant, rng.lognormal(np.log(2.0), 0.5, n), rng.lognormal(np.log(0.6), 0.5, n))
    if pop == "halo":
        d *= 2.0
    d = np.clip(d, 0.05, 15.0)
    z = rng.exponential(SCALE_HEIGHT[pop], n) * rng.choice([-1, 1], n)
    sinb = np.clip(z / d, -0.98, 0.98)
    sinb = np.where(np.abs(sinb) < 0.1, 0.1 * np.sign(sinb + 1e-9), sinb)  # GES avoids the plane
    l = rng.uniform(0, 360, n)
    c = SkyCoord(l=l * u.deg, b=np.degrees(np.arcsin(sinb)) * u.deg, distance=d * u.kpc, frame=Galactic())
    g = c.transform_to(Galactocentric())
    return g.x.to_value(u.kpc), g.y.to_value(u.kpc), g.z.to_value(u.kpc)


def cname(ra, dec) -> np.ndarray:
    """Gaia-ESO CNAME 'HHMMSSss±DDMMSSs' from RA/DEC in degrees (rounded to 0.01 s and 0.1")."""
    ra_cs = np.round(np.mod(np.atleast_1d(ra), 360.0) / 15 * 360000).astype(np.int64) % 8640000
    dec = np.atleast_1d(dec)
    dec_ds = np.round(np.abs(dec) * 36000).astype(np.int64)
    out = []
    for r, d, neg in zip(ra_cs, dec_ds, dec < 0):
        out.append(f"{r // 360000:02d}{r // 6000 % 60:02d}{r % 6000:04d}"
                   f"{'-' if neg else '+'}{d // 36000:02d}{d // 600 % 60:02d}{d % 600:03d}")
    return np.array(out)


def draw_population(n_stars: int, seed: int = 0, n_benchmarks: int | None = None) -> Table:
    """The true survey population: one row per star (labels, astrometry, population tags).

    Columns: POP, GES_FLD, GES_TYPE, OBJECT, TEFF, LOGG, FE_H, MG_FE, AL_FE, AGE, RA, DEC,
    PARALLAX, PMRA, PMDEC, VRAD, VSINI, ALPHA_FE ([Si/Fe] = [Ca/Fe] = [Ti/Fe]), V_R, V_PHI, V_Z (Galactocentric cylindrical, v_φ positive
    in the sense of rotation; NaN for clusters and benchmarks), CNAME.
    `n_benchmarks` defaults to all benchmarks when n_stars ≥ 200, else about a tenth of the stars.
    """
    rng = np.random.default_rng([seed, 1])
    if n_benchmarks is None:
        n_benchmarks = len(BENCHMARKS) if n_stars >= 200 else max(1, n_stars // 10)
    n_benchmarks = min(n_benchmarks, len(BENCHMARKS), n_stars)
    n_rest = n_stars - n_benchmarks
    counts = rng.multinomial(n_rest, list(FRACTIONS.values()))
    parts = []
    for pop, n in zip(FRACTIONS, counts):
        if n == 0:
            continue
        if pop == "gc":
            parts.append(_clusters(rng, n))
            continue
        feh, mg, al, age = _chemistry(rng, pop, n)
        giant_frac = {"thin": 0.40, "thick": 0.45, "halo": 0.65}[pop]
        teff, logg, giant = _kiel(rng, n, feh, age, giant_frac)
        x, y, z = _positions(rng, pop, n, giant)
        ra, dec, plx, pmra, pmdec, rv, (vr, vp, vz) = _to_sky(rng, x, y, z, pop, age)
        parts.append(Table({"POP": [pop] * n, "GES_FLD": [""] * n, "GES_TYPE": ["GE_MW"] * n,
                            "OBJECT": [""] * n, "TEFF": teff, "LOGG": logg,
                            "FE_H": feh, "MG_FE": mg, "AL_FE": al, "AGE": age, "RA": ra, "DEC": dec,
                            "PARALLAX": plx, "PMRA": pmra, "PMDEC": pmdec, "VRAD": rv,
                            "V_R": vr, "V_PHI": vp, "V_Z": vz, "VSINI": np.full(n, np.nan)}))
    if n_benchmarks:
        parts.append(_benchmarks(rng, n_benchmarks))
    from astropy.table import vstack

    t = vstack(parts)
    t = t[rng.permutation(len(t))]
    # slow rotators; warmer dwarfs spin faster (benchmarks keep their literature vsini)
    vs = rng.lognormal(np.log(2.5), 0.45, len(t)) * (1 + np.clip((t["TEFF"] - 6000) / 400, 0, 2))
    t["VSINI"] = np.where(np.isfinite(t["VSINI"]), t["VSINI"], np.round(np.clip(vs, 0.5, 18.0), 1))
    # Si, Ca, Ti: α-enhanced like Mg, with their own scatter (GC stars keep a constant α)
    alpha = np.where(t["POP"] == "gc", 0.30, 0.8 * t["MG_FE"]) + rng.normal(0, 0.04, len(t))
    t["ALPHA_FE"] = np.where(t["POP"] == "benchmark", 0.8 * t["MG_FE"], alpha)
    t["CNAME"] = cname(t["RA"], t["DEC"])
    # keep CNAMEs unique (close pairs such as alpha Cen A/B)
    seen: dict[str, int] = {}
    for i, c in enumerate(t["CNAME"]):
        if c in seen:
            seen[c] += 1
            t["CNAME"][i] = c[:-1] + str(seen[c] % 10)
        seen.setdefault(c, 0)
    t.meta["SEED"] = seed
    return t


def _clusters(rng, n: int) -> Table:
    """Red giants in globular clusters: one [Fe/H] per cluster, Mg–Al anticorrelation."""
    k = rng.integers(0, len(GLOBULAR_CLUSTERS), n)
    k[: min(n, len(GLOBULAR_CLUSTERS))] = np.arange(min(n, len(GLOBULAR_CLUSTERS)))  # every cluster present
    gc = [GLOBULAR_CLUSTERS[i] for i in k]
    col = lambda j: np.array([g[j] for g in gc], float)  # noqa: E731
    ra0, dec0, dist, feh0, rv0, pmra0, pmdec0, amp = (col(j) for j in range(1, 9))
    feh = feh0 + rng.normal(0, 0.03, n)
    # pollution p: 1/3 first generation (p≈0), the rest spread up to 1
    p = np.where(rng.random(n) < 0.33, rng.uniform(0, 0.08, n), rng.uniform(0.1, 1.0, n))
    al = 0.05 + amp * p + rng.normal(0, 0.04, n)
    mg = 0.40 - 0.35 * amp / 1.2 * p**2 + rng.normal(0, 0.03, n)
    age = rng.uniform(11.0, 13.0, n)
    lg = rng.uniform(1.0, 3.4, n)
    teff = 4700 + 330 * (lg - 2.5) - 230 * feh + rng.normal(0, 40, n)
    r = np.abs(rng.normal(0, 0.08, n))  # degrees from the centre
    pa = rng.uniform(0, 2 * np.pi, n)
    ra = ra0 + r * np.sin(pa) / np.cos(np.radians(dec0))
    dec = dec0 + r * np.cos(pa)
    return Table({"POP": ["gc"] * n, "GES_FLD": [g[0] for g in gc], "GES_TYPE": ["GE_SD_GC"] * n,
                  "OBJECT": [""] * n, "TEFF": np.clip(teff, 4000, 7000), "LOGG": lg, "FE_H": feh,
                  "MG_FE": mg, "AL_FE": al, "AGE": age, "RA": ra, "DEC": dec, "PARALLAX": 1 / dist,
                  "PMRA": pmra0 + rng.normal(0, 0.05, n), "PMDEC": pmdec0 + rng.normal(0, 0.05, n),
                  "VRAD": rv0 + rng.normal(0, 6.0, n), "V_R": np.full(n, np.nan),
                  "V_PHI": np.full(n, np.nan), "V_Z": np.full(n, np.nan), "VSINI": np.full(n, np.nan)})


def _benchmarks(rng, n: int) -> Table:
    """The first `n` benchmarks from the shipped table (literature values, not drawn)."""
    rows = BENCHMARKS[:n]
    col = lambda j: np.array([r[j] for r in rows], float)  # noqa: E731
    return Table({"POP": ["benchmark"] * n, "GES_FLD": [r[0] for r in rows], "GES_TYPE": ["GE_SD_BM"] * n,
                  "OBJECT": [r[0] for r in rows], "TEFF": col(3), "LOGG": col(4), "FE_H": col(5),
                  "MG_FE": col(6), "AL_FE": col(7), "AGE": np.full(n, np.nan), "RA": col(1), "DEC": col(2),
                  "PARALLAX": col(10), "PMRA": col(11), "PMDEC": col(12), "VRAD": col(8),
                  "V_R": np.full(n, np.nan), "V_PHI": np.full(n, np.nan), "V_Z": np.full(n, np.nan),
                  "VSINI": col(9)})


# ----------------------------------------------------------------------------- validation subsets
# Drawn from their own random streams ([seed, 5] and [seed, 6]) so that adding them leaves every
# earlier draw of the population and the survey unchanged.

BENCHMARK_EPOCHS = 3  # extra epochs per benchmark star (the paper validates with repeat spectra)
EPOCH_RV_JITTER = 1.0  # km/s: epoch-to-epoch change of the true RV (wavelength calibration, orbits)


def benchmark_epochs(truth: Table, seed: int, epochs: int = BENCHMARK_EPOCHS) -> Table:
    """Repeat observations of the benchmark stars: `epochs` extra truth rows per benchmark.

    Each row keeps the star's labels and OBJECT name but gets its own CNAME, made from
    coordinates moved by one CNAME digit (0.01 s in RA, i.e. ≤ 0.15″, and/or 0.1″ in DEC),
    and its own true RV (jitter EPOCH_RV_JITTER). Validation groups repeats by OBJECT.
    """
    rng = np.random.default_rng([seed, 5])
    bench = truth[np.asarray(truth["POP"]) == "benchmark"]
    if epochs <= 0 or len(bench) == 0:
        return bench[:0]
    rep = bench[np.repeat(np.arange(len(bench)), epochs)]
    k = np.tile(np.arange(epochs), len(bench))
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)]
    d_ra = np.array([steps[i % len(steps)][0] for i in k]) * 0.01 * 15 / 3600  # deg (0.01 s of time)
    d_dec = np.array([steps[i % len(steps)][1] for i in k]) * 0.1 / 3600  # deg (0.1″)
    rep["RA"] = np.mod(np.asarray(rep["RA"], float) + d_ra, 360.0)
    rep["DEC"] = np.asarray(rep["DEC"], float) + d_dec
    rep["VRAD"] = np.asarray(rep["VRAD"], float) + rng.normal(0, EPOCH_RV_JITTER, len(rep))
    taken = set(np.asarray(truth["CNAME"]).astype(str))
    names = []
    for c in cname(rep["RA"], rep["DEC"]):
        c = str(c)
        while c in taken:  # a collision (rounding): step the last DEC digit on
            c = c[:-1] + str((int(c[-1]) + 1) % 10)
        taken.add(c)
        names.append(c)
    rep["CNAME"] = names
    return rep


def seismic_subset(truth: Table, seed: int, fraction: float = 0.25, sigma=(0.01, 0.03)) -> Table:
    """An asteroseismic log g table for a random `fraction` of the field red giants.

    Format of the GES × CoRoT master list: CNAME, LOGG, E_LOGG (σ drawn uniformly in `sigma`,
    the precision of CoRoT/Kepler scaling relations), plus TEFF_SEIS/GES_TYPE for context.
    """
    rng = np.random.default_rng([seed, 6])
    n = len(truth)
    pop = np.asarray(truth["POP"]).astype(str)
    giant = np.isin(pop, ("thin", "thick", "halo")) & (np.asarray(truth["LOGG"]) < 3.3)
    pick = giant & (rng.random(n) < fraction)
    sig = rng.uniform(sigma[0], sigma[1], n)
    logg = np.asarray(truth["LOGG"], float) + rng.normal(0, 1, n) * sig
    t = Table({"CNAME": np.asarray(truth["CNAME"])[pick], "GES_TYPE": np.full(int(pick.sum()), "CoRoT"),
               "LOGG": np.round(logg[pick], 3).astype(np.float32),
               "E_LOGG": np.round(sig[pick], 3).astype(np.float32)})
    t.meta["ORIGIN"] = "starlabel mock asteroseismic log g"
    t.meta["SEED"] = seed
    return t


def mock_isochrone_ages(truth: Table, seed: int, sigma_log_age: float = 0.08) -> Table:
    """A stand-in for isochrone-fitting output, in UniDAM's columns: id (= CNAME), age_mean and
    age_err as log10(age/yr) — the true age plus Gaussian noise of `sigma_log_age` dex.

    Only for exercising `validate ages` on the mock (starlabel fits no isochrones); stars without a
    true age (benchmarks) are left out."""
    rng = np.random.default_rng([seed, 7])
    age = np.asarray(truth["AGE"], float)
    ok = np.isfinite(age) & (age > 0)
    log_age = np.log10(age[ok] * 1e9) + rng.normal(0, sigma_log_age, int(ok.sum()))
    t = Table({"id": np.asarray(truth["CNAME"])[ok], "age_mean": np.round(log_age, 3),
               "age_err": np.full(int(ok.sum()), sigma_log_age)})
    t.meta["ORIGIN"] = "starlabel mock: true ages + noise in UniDAM's columns (not an isochrone fit)"
    return t
