"""`starlabel synth survey`: write a mock Gaia-ESO iDR6 GIRAFFE survey (spectra, catalogue, truth)."""


def add_parser(sub):
    p = sub.add_parser("synth", help="make a mock Gaia-ESO survey (the embedded default data)",
                       description=__doc__)
    what = p.add_subparsers(dest="what", metavar="<what>", required=True)
    s = what.add_parser("survey", help="spectra/*.fits + catalogue.fits + truth.fits in GES format",
                        description="Write DIR/spectra/gir_<CNAME>_<H-code>.fit (GES CASU products), DIR/catalogue.fits and "
                                    "DIR/truth.fits (see docs/contracts.md). Same seed, same survey; "
                                    "re-running into the same DIR resumes.")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory")
    s.add_argument("--n-stars", type=int, default=2000, help="number of stars (default 2000)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    s.add_argument("--overwrite", action="store_true", help="allow replacing a survey made with other settings")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=run)


def run(args):
    from ..mock.survey import make_survey

    summary = make_survey(args.out, args.n_stars, seed=args.seed, workers=args.workers,
                          progress=not args.no_progress, overwrite=args.overwrite)
    print(f"wrote {summary['stars']} stars ({summary['spectra']} spectra, {summary['pathological']} pathological) "
          f"to {summary['out']}: spectra/, catalogue.fits, truth.fits")
