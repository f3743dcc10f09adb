"""`starlabel map`: t-SNE similarity map of all spectra; outliers and inner/outer observed sets (paper Sects. 2.1, 2.3)."""


def add_parser(sub):
    p = sub.add_parser("map", help="t-SNE similarity map: outliers and inner/outer observed sets",
                       description=__doc__)
    p.add_argument("sets", help="SETS.h5 written by `starlabel select`")
    p.add_argument("--out", required=True, help="output MAP.h5 (outlier table also as MAP_outliers.csv)")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30; 20-50 equivalent)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--inner-distance", type=float, default=None,
                   help="map distance to the nearest training spectrum within which an observed spectrum is inner "
                        "(default: --inner-factor x the median training nearest-neighbour distance)")
    p.add_argument("--inner-factor", type=float, default=3.0, help="see --inner-distance (default 3)")
    p.add_argument("--outlier-z", type=float, default=4.0,
                   help="KNN robust z-score above which a spectrum is an outlier (default 4)")
    p.add_argument("--residual-z", type=float, default=7.0,
                   help="LINE/BROAD robust z-score above which a spectrum is an outlier (default 7)")
    p.add_argument("--n-components", type=int, default=50, help="PCA components before t-SNE (default 50)")
    p.add_argument("--jobs", type=int, default=2, help="threads (default 2)")
    p.add_argument("--figures", metavar="DIR", help="write the PNG figures here (default: beside MAP.h5)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from ..similarity import MapSettings
    from ..stages.map import map as map_spectra

    settings = MapSettings(perplexity=args.perplexity, seed=args.seed, inner_distance=args.inner_distance,
                           inner_factor=args.inner_factor, outlier_z=args.outlier_z, residual_z=args.residual_z,
                           n_components=args.n_components, n_jobs=args.jobs)
    out = Path(args.out)
    m = map_spectra(args.sets, out, settings=settings)
    print(f"wrote {out} and {out.with_name(out.stem + '_outliers.csv')}")
    if not args.no_figures:
        from ..io.dataset import Dataset
        from ..plots.maps import write_map_figures

        ds = Dataset(args.sets)
        paths = write_map_figures(m, args.figures or out.parent, out.stem, ds.read, ds.wavelength)
        for p in paths:
            print(f"wrote {p}")
