"""`starlabel select`: quality cuts → training candidates and observed set."""


def add_parser(sub):
    p = sub.add_parser("select", help="apply the paper's quality cuts: training candidates and observed set",
                       description=__doc__)
    p.add_argument("dataset", help="DATASET.h5 written by `starlabel prepare`")
    p.add_argument("--out", required=True, help="output SETS.h5")
    p.add_argument("--min-snr", type=float, default=30.0,
                   help="training set: lowest S/N (default %(default)s)")
    p.add_argument("--max-e-teff", type=float, default=200.0,
                   help="training set: largest E_TEFF in K (default %(default)s)")
    p.add_argument("--max-e-logg", type=float, default=0.3,
                   help="training set: largest E_LOGG in dex (default %(default)s)")
    p.add_argument("--max-e-abundance", type=float, default=0.2,
                   help="training set: largest E_FE1, E_MG1, E_AL1 in dex (default %(default)s)")
    p.add_argument("--allow-flags", action="store_true",
                   help="training set: keep spectra with TECH/PECULI flags (default: drop them)")
    p.add_argument("--max-vsini", type=float, default=20.0,
                   help="training set: largest VSINI in km/s (default %(default)s)")
    p.add_argument("--max-feh-mismatch", type=float, default=0.2,
                   help="training set: largest |FEH - [Fe/H] from FE1| in dex (default %(default)s)")
    p.add_argument("--observed-min-snr", type=float, default=10.0,
                   help="observed set: lowest S/N of the spectra that fail a cut (default %(default)s)")
    p.add_argument("--exclude-outliers", metavar="MAP.h5",
                   help="keep the outliers flagged in this similarity map out of the training set")
    p.set_defaults(func=run)


def run(args):
    from ..labels import QualityCuts
    from ..select import select

    cuts = QualityCuts(min_snr=args.min_snr, max_e_teff=args.max_e_teff, max_e_logg=args.max_e_logg,
                       max_e_abundance=args.max_e_abundance, no_flags=not args.allow_flags,
                       max_vsini=args.max_vsini, max_feh_mismatch=args.max_feh_mismatch,
                       observed_min_snr=args.observed_min_snr)
    exclude = ()
    if args.exclude_outliers:
        from ..stages.map import outlier_cnames

        exclude = outlier_cnames(args.exclude_outliers)
    path, _ = select(args.dataset, args.out, cuts, exclude_cnames=exclude)
    print(f"wrote {path}")
