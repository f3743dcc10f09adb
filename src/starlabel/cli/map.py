"""`starlabel map`: t-SNE similarity map of all spectra; outliers and inner/outer observed sets (paper Sects. 2.1, 2.3)."""


def add_parser(sub):
    from ..similarity.settings import MapSettings
    from .options import default

    p = sub.add_parser("map", help="t-SNE similarity map: outliers and inner/outer observed sets",
                       description=__doc__)
    p.add_argument("sets", help="SETS.h5 written by `starlabel select`")
    p.add_argument("--out", required=True, help="output MAP.h5 (outlier table also as MAP_outliers.csv)")

    def setting(flag, field, kind, text):
        p.add_argument(flag, dest=field, type=kind, help=f"{text} {default(MapSettings, field)}")

    setting("--perplexity", "perplexity", float, "t-SNE perplexity (20-50 give equivalent maps)")
    setting("--seed", "seed", int, "random seed")
    setting("--inner-distance", "inner_distance", float,
            "map distance to the nearest training spectrum within which an observed spectrum is inner "
            "(off: --inner-factor x the median training nearest-neighbour distance)")
    setting("--inner-factor", "inner_factor", float, "see --inner-distance")
    setting("--outlier-z", "outlier_z", float, "KNN robust z-score above which a spectrum is an outlier")
    setting("--residual-z", "residual_z", float, "LINE/BROAD robust z-score above which a spectrum is an outlier")
    setting("--n-components", "n_components", int, "PCA components before t-SNE")
    setting("--jobs", "n_jobs", int, "threads")
    p.add_argument("--figures", metavar="DIR", help="write the PNG figures here (default: beside MAP.h5)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from ..similarity.settings import MapSettings
    from ..stages.map import map as map_spectra
    from .options import settings as from_options

    settings = from_options(MapSettings, args)
    out = Path(args.out)
    m = map_spectra(args.sets, out, settings=settings, progress=not args.no_progress)
    print(f"wrote {out} and {out.with_name(out.stem + '_outliers.csv')}")
    if not args.no_figures:
        from ..io.dataset import Dataset
        from ..plots.maps import write_map_figures

        ds = Dataset(args.sets)
        paths = write_map_figures(m, args.figures or out.parent, out.stem, ds.read, ds.wavelength)
        for p in paths:
            print(f"wrote {p}")
