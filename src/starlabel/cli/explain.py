"""`starlabel explain`: gradient sensitivity maps, line identification and (optionally) the
label-correlation experiment of Sect. 4.4."""


def add_parser(sub):
    p = sub.add_parser("explain", help="gradient maps ∂label/∂flux and the lines the network reads",
                       description=__doc__)
    p.add_argument("model_dir", help="ensemble bundle written by `starlabel train`")
    p.add_argument("sets", help="SETS.h5 written by `starlabel select`")
    p.add_argument("--out", required=True, help="output EXPLAIN.h5 (lines.csv and gradients.png go beside it)")
    p.add_argument("--which", default="test", choices=("test", "train", "training", "observed", "all"),
                   help="spectra to average over: the bundle's test or train split, all training "
                        "candidates, the observed set, or everything (default: test)")
    p.add_argument("--n-max", type=int, default=1000, help="at most this many spectra (random, seeded)")
    p.add_argument("--chunk", type=int, default=64, help="spectra per gradient batch (bounds memory)")
    p.add_argument("--peaks", type=int, default=10, help="peaks reported per label")
    p.add_argument("--tolerance", type=float, default=1.0, help="max peak–line distance for a match [Å]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare-absolute", metavar="ABS_MODEL_DIR",
                   help="a bundle trained on MG1, AL1, FE1: also write the gradient-correlation table of it "
                        "and MODEL_DIR (trained on MG_FE, AL_FE, FE_H) into OUT's folder/correlation/")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from ..stages.explain import (
        explain,
        format_correlation,
        label_correlation_experiment,
    )

    maps = explain(args.model_dir, args.sets, args.out, which=args.which, n_max=args.n_max, chunk=args.chunk,
                   seed=args.seed, n_peaks=args.peaks, tolerance=args.tolerance,
                   progress=not args.no_progress)
    out = Path(args.out)
    print(f"wrote {out}, {out.with_name('lines.csv')}, {out.with_name('gradients.png')} "
          f"({maps.n_spectra} spectra)")
    for name in maps.labels:
        top = maps.lines[maps.lines["label"] == name][:3]
        desc = ", ".join(f"{r['peak_wavelength']:.2f} Å ({r['species'] or '?'})" for r in top)
        print(f"  {name:<7} {desc}")
    from ..stages.explain import expected_line_check

    for r in expected_line_check(maps.lines):
        print(f"  {r['label']} peak #{r['rank']} at {r['peak_wavelength']:.2f} Å: {r['distance']:+.2f} Å from the "
              f"GES line at {r['expected_line']:.2f} Å -> {'ok' if r['ok'] else 'NOT within tolerance'}")
    if args.compare_absolute:
        table = label_correlation_experiment(args.compare_absolute, args.model_dir, args.sets,
                                             out.parent / "correlation", args.which, args.n_max, args.chunk, args.seed)
        print(format_correlation(table))
