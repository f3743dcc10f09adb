"""`starlabel demo`: the whole pipeline on a mock Gaia-ESO survey, ending with an HTML report."""


def add_parser(sub):
    p = sub.add_parser("demo", help="run the whole pipeline on a mock survey and write an HTML report",
                       description=__doc__ + " Re-running into the same --out resumes.")
    p.add_argument("--out", default="demo_run", help="run directory (default: demo_run)")
    p.add_argument("--preset", choices=("quick", "paper"), default="quick",
                   help="quick: 3 000 stars, small networks (1–2 min on 2 cores); "
                        "paper: 35 000 stars, paper architecture, best 8 of 10 runs (about 2 hours)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-stars", type=int, help="override the preset's survey size")
    p.add_argument("--runs", type=int, help="override the preset's number of training runs")
    p.add_argument("--keep", type=int, help="override the preset's number of kept runs")
    p.add_argument("--max-epochs", type=int, help="override the training preset's maximum epochs")
    p.add_argument("--engine", choices=("emulator", "onelayer"), default="emulator",
                   help="the mock survey's synthesis engine (default: emulator, see `starlabel synth survey`)")
    p.add_argument("--workers", type=int, default=2, help="processes for synth and prepare")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run)


def run(args):
    from ..stages.demo import demo

    demo(args.out, preset=args.preset, seed=args.seed, n_stars=args.n_stars, runs=args.runs,
         keep=args.keep, workers=args.workers, max_epochs=args.max_epochs,
         progress=not args.no_progress, engine=args.engine)
