"""`starlabel evaluate`: bias, scatter and uncertainty calibration per set, and the paper's figures."""


def add_parser(sub):
    p = sub.add_parser("evaluate", help="bias/scatter tables and the paper's diagnostic figures",
                       description=__doc__)
    p.add_argument("model_dir", help="ensemble bundle (split.json, history.json, snapshots)")
    p.add_argument("sets", help="SETS.h5 written by `starlabel select`")
    p.add_argument("labels", help="LABELS.fits written by `starlabel predict` on SETS.h5")
    p.add_argument("--map", help="MAP.h5 from `starlabel map`: splits the observed set into inner/outer")
    p.add_argument("--truth", help="truth table (CNAME + label columns), e.g. a mock survey's truth.fits")
    p.add_argument("--out", required=True, help="output directory EVAL_DIR")
    p.set_defaults(func=run)


def run(args):
    from ..stages.evaluate import evaluate

    index = evaluate(args.model_dir, args.sets, args.labels, args.out, map_path=args.map, truth_path=args.truth)
    print(f"wrote {len(index)} files to {args.out}")
