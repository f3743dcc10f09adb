"""Which pixels carry the real Sun's label offset? (issue 11: where the sim-to-real gap comes from)

    PYTHONPATH=src .venv/bin/python benchmarks/bench_real_attribution.py MODEL [--window 1.0] [--top 10] [--by-species]

A network trained on the mock labels the real Sun differently from the mock Sun of the emulator
(`bench_real_labels.py`). Integrated gradients (Sundararajan et al. 2017) split that difference over
the pixels: contribution_p = (real − mock)_p × the mean gradient ∂label/∂flux_p along the straight
path from the mock Sun to the real one (`--steps` points). The contributions sum to the label
difference up to the path's discretisation (printed as a check). Printed per setup and for the
`--top` `--window`-Å windows that move each label most, each with the strongest lines of the
starlabel line list inside it (strength log ε☉ + log gf − 5040/T☉·EP), so that a user sees
which lines of the training physics do not match the real star. `--by-species` sums the contributions
per species instead (each pixel counted for the strongest listed line within `--halfwidth` Å of it), to
weigh species whose line data are known to be incomplete (no hyperfine components, no VALD entry).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench_real_labels import spectra_for


def attribution(ens, mock: np.ndarray, real: np.ndarray, steps: int = 8) -> np.ndarray:
    """(L, P) integrated-gradient contributions of each pixel to label(real) − label(mock)."""
    diff = real - mock
    path = [(mock + (i + 0.5) / steps * diff)[None].astype(np.float32) for i in range(steps)]
    return np.mean([ens.gradients(x)[0] for x in path], axis=0) * diff


def line_strength(lines) -> np.ndarray:
    """log ε☉ + log gf − θ☉·EP: which of two close lines is the stronger in a solar-type star (ionisation
    balance ignored)."""
    from starlabel.labels import SOLAR_GAS07

    abundance = np.array([SOLAR_GAS07.get(str(e), 0.0) for e in lines["ELEMENT"]])
    return abundance + np.asarray(lines["LOGGF"]) - 5040.0 / 5772.0 * np.asarray(lines["EP"])


def strongest_lines(lines, lo: float, hi: float, n: int = 2) -> str:
    inside = lines[(lines["WAVELENGTH"] >= lo) & (lines["WAVELENGTH"] < hi)]
    if not len(inside):
        return "—"
    best = inside[np.argsort(-line_strength(inside))[:n]]
    return ", ".join(f"{r['SPECIES']} {r['WAVELENGTH']:.2f}" for r in best)


def species_of_pixels(wave: np.ndarray, lines, halfwidth: float) -> np.ndarray:
    """The species of the strongest listed line within `halfwidth` Å of each pixel ('no listed line' else)."""
    out = np.full(wave.size, "no listed line", dtype=object)
    best = np.full(wave.size, -np.inf)
    for w, sp, st in zip(np.asarray(lines["WAVELENGTH"]), np.asarray(lines["SPECIES"]), line_strength(lines)):
        near = slice(*np.searchsorted(wave, [w - halfwidth, w + halfwidth]))
        stronger = best[near] < st
        out[near][stronger], best[near][stronger] = sp, st
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model bundle directory (trained on the mock survey)")
    p.add_argument("--window", type=float, default=1.0, help="Å per window")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--steps", type=int, default=8, help="points on the path mock → real")
    p.add_argument("--by-species", action="store_true", help="also sum the contributions per species")
    p.add_argument("--halfwidth", type=float, default=0.2, help="Å around a line that counts for it (--by-species)")
    p.add_argument("--group", default="Ti,V,Cr,Mn,Co,Ni",
                   help="elements summed together with --by-species (default: those the VALD HR10 extract in "
                        "../shared/data lacks, whose HR10 lines keep linemake's log gf and SME's default damping)")
    p.add_argument("--emulator", metavar="FILE", help="the emulator the mock was made with, if not the shipped one")
    a = p.parse_args(argv)
    from starlabel import Ensemble
    from starlabel.io.linelist import read_linelist

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}")
    ens = Ensemble.load(a.model)
    stars = spectra_for(ens, emulator=a.emulator)
    real, mock = stars["real Sun"][0], stars["mock Sun, emulator engine"][0]
    names, wave, lines = ens.labels.names, ens.grid.wavelength, read_linelist()
    contrib = attribution(ens, mock, real, a.steps)
    got = ens.predict(np.stack([real, mock]).astype(np.float32)).mean
    print(f"{a.model}: label(real Sun) − label(emulator Sun), and the sum of the contributions (check)")
    for j, n in enumerate(names):
        print(f"  {n:6s} {got[0, j] - got[1, j]:+9.3f}  sum {contrib[j].sum():+9.3f}  by setup: " + ", ".join(
            f"{s.name} {contrib[j, sl].sum():+.3f}" for s, sl in zip(ens.grid.setups, ens.grid.slices().values())))
    edges = np.arange(np.floor(wave.min() / a.window) * a.window, wave.max() + a.window, a.window)
    which = np.digitize(wave, edges) - 1
    for j, n in enumerate(names):
        per = np.bincount(which, weights=contrib[j], minlength=len(edges))
        print(f"\n{n}: the {a.top} windows that move it most")
        for k in np.argsort(-np.abs(per))[: a.top]:
            lo = edges[k]
            print(f"  {lo:8.1f}–{lo + a.window:<8.1f} {per[k]:+9.3f}   {strongest_lines(lines, lo, lo + a.window)}")
    if a.by_species:
        species = species_of_pixels(wave, lines, a.halfwidth)
        kinds = sorted(set(species))
        print(f"\nper species (pixels within {a.halfwidth} Å of a listed line, strongest line wins):")
        for j, n in enumerate(names):
            per = {k: contrib[j, species == k].sum() for k in kinds}
            top = sorted(per, key=lambda k: -abs(per[k]))[: a.top]
            print(f"  {n:6s} " + ", ".join(f"{k} {per[k]:+.3f}" for k in top))
        group = np.isin([k.split()[0] for k in species], a.group.split(","))
        print(f"elements {a.group} together ({group.mean():.1%} of the pixels): " + ", ".join(
            f"{n} {contrib[j, group].sum():+.3f}" for j, n in enumerate(names)))
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
