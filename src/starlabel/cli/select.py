"""`starlabel select`: quality cuts → training candidates and observed set (paper Sect. 2.2)."""


def add_parser(sub):
    from ..labels import QualityCuts
    from .options import default

    p = sub.add_parser("select", help="apply the paper's quality cuts: training candidates and observed set",
                       description=__doc__)
    p.add_argument("dataset", help="DATASET.h5 written by `starlabel prepare`")
    p.add_argument("--out", required=True, help="output SETS.h5")
    cut = lambda flag, field, text: p.add_argument(  # noqa: E731
        flag, dest=field, type=float, metavar="X", help=f"{text} {default(QualityCuts, field)}")
    cut("--min-snr", "min_snr", "training set: lowest S/N")
    cut("--max-e-teff", "max_e_teff", "training set: largest E_TEFF in K")
    cut("--max-e-logg", "max_e_logg", "training set: largest E_LOGG in dex")
    cut("--max-e-abundance", "max_e_abundance", "training set: largest E_FE1, E_MG1, E_AL1 in dex")
    cut("--max-vsini", "max_vsini", "training set: largest VSINI in km/s")
    cut("--max-feh-mismatch", "max_feh_mismatch", "training set: largest |FEH - [Fe/H] from FE1| in dex")
    cut("--observed-min-snr", "observed_min_snr", "observed set: lowest S/N of the spectra that fail a cut")
    p.add_argument("--allow-flags", action="store_true", help="keep spectra with TECH/PECULI flags "
                   "(default: they are cut)")
    p.add_argument("--partial-abundances", action="store_true",
                   help="a star whose Mg or Al abundance is missing or fails --max-e-abundance still trains, on its "
                        "other labels ([Mg/Fe] / [Al/Fe] set to NaN in SETS.h5 for it; default: the paper's rule, "
                        "every abundance must pass)")
    p.add_argument("--exclude-outliers", metavar="MAP.h5",
                   help="keep the outliers flagged in this similarity map out of the training set")
    p.add_argument("--missing-setups", choices=("exclude", "include"), default="exclude",
                   help="stars prepared with a missing setup (MISSING_SETUP): keep them out of the training "
                        "set (default; they stay in the observed set) or let them train")
    p.set_defaults(func=run)


def run(args):
    from ..labels import QualityCuts
    from ..stages.select import select
    from .options import settings

    cuts = settings(QualityCuts, args)
    if args.allow_flags:
        cuts.no_flags = False
    cuts.partial_abundances = args.partial_abundances
    exclude = ()
    if args.exclude_outliers:
        from ..stages.map import outlier_cnames

        exclude = outlier_cnames(args.exclude_outliers)
    path, _ = select(args.dataset, args.out, cuts, exclude_cnames=exclude, missing_setups=args.missing_setups)
    print(f"wrote {path}")
