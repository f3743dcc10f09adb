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
    s.add_argument("--engine", choices=["emulator", "onelayer"], default="emulator",
                   help="emulator (default): the shipped emulator of PySME + ATLAS9 spectra (docs/pysme_grid.md); "
                        "onelayer: the one-layer line formation of the first mock surveys")
    s.add_argument("--emulator", metavar="FILE", help="with --engine emulator: an emulator rebuilt with "
                   "`python -m starlabel.mock.emulator` instead of the shipped one (recorded in synth.json)")
    s.add_argument("--overwrite", action="store_true", help="allow replacing a survey made with other settings")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=run)
    g = what.add_parser("grid", help="a resumable PySME training grid over the mock's label space (needs [synth])",
                        description="One DIR/<key>.npz per label point (normalised, unbroadened HR10/HR21 flux); "
                                    "existing points are skipped, so a killed run continues. See docs/pysme_grid.md.")
    g.add_argument("--engine", choices=["pysme"], default="pysme", help="synthesis code (default pysme)")
    g.add_argument("--out", required=True, metavar="DIR", help="cache directory")
    g.add_argument("--n", type=int, default=3000, help="number of label points (default 3000)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    g.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    g.add_argument("--astrophysical-gf", default="", choices=["", "even", "all"],
                   help="solar-fitted log gf (package table): lines of the even 5-Å windows or all (default: lab)")
    g.add_argument("--gf-source", default="vald", choices=["vald", "linemake", "ges"],
                   help="log gf of the atomic lines: VALD's where VALD has the line, plus VALD's lines linemake lacks "
                        "(default), linemake's alone (the grids before 2026-12-01), or the Gaia-ESO line list with its "
                        "hyperfine components (ges; fetch it once with `python -m starlabel.mock.ges_lines`); "
                        "PysmeSettings.gf_source")
    g.add_argument("--molecules", action="store_true",
                   help="add the VALD molecular lines (CN, C2, TiO, OH, CH, MgH) to HR21 (default: atomic lines only)")
    g.set_defaults(func=run_grid)


def run(args):
    from ..mock.survey import make_survey

    summary = make_survey(args.out, args.n_stars, seed=args.seed, workers=args.workers,
                          progress=not args.no_progress, overwrite=args.overwrite, engine_name=args.engine,
                          emulator=args.emulator)
    print(f"wrote {summary['stars']} stars ({summary['spectra']} spectra, {summary['pathological']} pathological) "
          f"to {summary['out']}: spectra/, catalogue.fits, truth.fits")


def run_grid(args):
    from ..mock.pysme_grid import main

    argv = ["--out", args.out, "--n", str(args.n), "--seed", str(args.seed), "--workers", str(args.workers)]
    if args.astrophysical_gf:
        argv += ["--astrophysical-gf", args.astrophysical_gf]
    if args.molecules:
        argv += ["--molecules"]
    argv += ["--gf-source", args.gf_source]
    return main(argv)
