"""Where the real Sun and the PySME Sun differ: the 1-Å windows that carry the flux residual, and what kind.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_sun_residual.py [--setup HR10] [--gf-source vald|linemake|ges] [--top 20]

Real Sun (UVES HR10 / SAO2010 HR21 from ../shared/data) and the PySME Sun at 5772 K / 4.44 / 0.00, both at
GIRAFFE resolution on the pipeline grid (`mock.sim_to_real`). Prints the RMS, what a Doppler shift, another
resolution or v_mac would change (the data preparation's share), how the squared residual splits between
continuum, lines only one spectrum has and lines both have, and the worst 1-Å windows with the
linemake/VALD lines there. This is how the Si I 5.6-eV lines with linemake log gf 2 dex above VALD's were
found (2026-12-01). `--vdw-default -7.5 -7.1` also prints the RMS (all / fitted half / held-out half) with
that log γ6 given to every line VALD has no van der Waals constant for (SME's Unsöld otherwise): the test
of whether missing damping (Ti, Cr, Ni, Mn, Co, V, Sc lines of linemake) explains the strong-line misfits.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", default="HR10", choices=["HR10", "HR21"])
    p.add_argument("--gf-source", default="vald", choices=["vald", "linemake", "ges"])
    p.add_argument("--top", type=int, default=20, help="worst 1-Å windows to list")
    p.add_argument("--vdw-default", type=float, nargs="*", default=[], metavar="LOG_GAMMA6",
                   help="also try these log γ6 (per perturber, 10 000 K) for the lines without VALD damping")
    a = p.parse_args(argv)

    from starlabel.grid import Grid, resample
    from starlabel.mock import pysme_engine as pe
    from starlabel.mock import sim_to_real as s2r
    from starlabel.mock.engine import broaden, macroturbulence

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}; "
          f"{a.setup}, gf_source={a.gf_source}")
    settings = pe.PysmeSettings(gf_source=a.gf_source)
    wave = pe.native_wavelength(a.setup)
    flux = pe.synthesize_window(s2r.sun_labels(), wave, settings).astype(float)
    grid = Grid((Grid.default().setup(a.setup),))
    gw = grid.setups[0].wavelength
    real = s2r.real_sun(pe.SHARED_DATA, grid)[a.setup]
    vmac = float(macroturbulence(s2r.SUN["teff"], s2r.SUN["logg"]))
    resolution = s2r.GIRAFFE_RESOLUTION[a.setup]

    def model(r=resolution, v=vmac, shift=0.0, native=flux):
        w = wave * (1 + shift / 299792.458)
        return resample(w, broaden(native, w, r, v, s2r.SUN_VSINI), gw)[0]

    m = model()
    fit, held = s2r.half_masks(gw)
    print(f"RMS real − model {s2r.rms(real, m):.4f} (held-out half {s2r.rms(real, m, held):.4f})")
    print("data preparation: " + ", ".join(
        [f"shift {s:+.1f} km/s {s2r.rms(real, model(shift=s)):.4f}" for s in (-0.5, 0.5)]
        + [f"R {r:.0f} {s2r.rms(real, model(r=r)):.4f}" for r in (0.85 * resolution, 1.15 * resolution)]
        + [f"v_mac {v:.0f} {s2r.rms(real, model(v=v)):.4f}" for v in (1.0, 5.0)]))
    if a.vdw_default:
        lines = pe.linelist_frame(settings)
        lines = lines[(lines["wave"] > wave[0] - 3) & (lines["wave"] < wave[-1] + 3)].copy()
        bare = lines["gamvw"] == 0
        print(f"{int(bare.sum())} of {len(lines)} lines without VALD van der Waals damping "
              "(most: " + ", ".join(f"{k} {v}" for k, v in lines[bare]["species"].value_counts().head(6).items()) + ")")
        def three(mod):
            return f"RMS {s2r.rms(real, mod):.4f}, fitted half {s2r.rms(real, mod, fit):.4f}, held-out half {s2r.rms(real, mod, held):.4f}"

        print(f"  SME's default for them: {three(m)}")
        for g in a.vdw_default:
            lines.loc[bare, "gamvw"] = g
            f = pe.synthesize_window(s2r.sun_labels(), wave, settings, linelist_df=lines).astype(float)
            print(f"  log γ6 {g:+.2f} for them: {three(model(native=f))}")
    r = real - m
    ok = np.isfinite(r)
    dm, dr = 1 - m, 1 - real
    kinds = {"continuum (both < 2 % deep)": (dm < 0.02) & (dr < 0.02),
             "line only in the real Sun": (dr > 0.05) & (dm < 0.02),
             "line only in the model": (dm > 0.05) & (dr < 0.02),
             "line in both": (dm >= 0.02) & (dr >= 0.02)}
    total = np.sum(r[ok] ** 2)
    for name, c in kinds.items():
        c &= ok
        print(f"  {name:30s} {c.sum():5d} pixels, {np.sum(r[c] ** 2) / total:5.1%} of Σr², mean r {r[c].mean():+.4f}")
    from pysme.abund import Abund

    lines = pe.linelist_frame(settings)
    eps = Abund(0.0, "solar").get_pattern("H=12")  # a line's strength ~ log ε + log gf − θχ (θ ≈ 1 in the Sun)
    lines["strength"] = [eps.get(sp.split()[0], 0.0) for sp in lines["species"]] + lines["loggf"] - lines["ep"]
    k = np.floor(gw).astype(int)
    keys = np.unique(k[ok])
    share = np.array([np.sum(r[(k == q) & ok] ** 2) for q in keys]) / total
    order = np.argsort(share)[::-1]
    print(f"1-Å windows holding half of Σr²: {np.searchsorted(np.cumsum(share[order]), 0.5) + 1} of {keys.size}")
    for q in order[: a.top]:
        c = (k == keys[q]) & ok
        j = np.flatnonzero(c)[np.argmax(np.abs(r[c]))]
        near = lines[np.abs(lines["wave"] - gw[j]) < 0.08]
        near = near.iloc[np.argsort(-near["strength"].to_numpy())[:2]]
        ids = "; ".join(f"{s} {w:.3f} χ {e:.2f} log gf {g:+.2f}" for s, w, e, g in
                        zip(near["species"], near["wave"], near["ep"], near["loggf"]))
        print(f"  {keys[q]} Å {share[q]:5.1%}: real {real[j]:.3f} model {m[j]:.3f} at {gw[j]:.2f}  [{ids}]")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
