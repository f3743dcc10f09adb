"""`starlabel prepare`: clean, rest-frame shift, resample and concatenate survey spectra (paper Sect. 2.1)."""


def add_parser(sub):
    p = sub.add_parser("prepare", help="clean, shift and resample spectra onto the grid → dataset HDF5",
                       description=__doc__)
    p.add_argument("catalogue", help="catalogue (FITS/CSV) with CNAME, SETUP, VRAD")
    p.add_argument("spectra_dir", help="directory of <CNAME>_<SETUP>.fits (or .txt, Phase 3 FITS) spectra")
    p.add_argument("--out", required=True, help="output DATASET.h5")
    p.add_argument("--grid", default="HR10,HR21",
                   help="setups: known names (HR10, HR21) or NAME:start:stop:step segments, comma-separated "
                        "(default: the paper's HR10,HR21)")
    p.add_argument("--chunk", type=int, default=256, help="stars per work unit (default 256)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--normalise", action="store_true",
                   help="fit and divide a continuum (for unnormalised spectra, e.g. ESO Phase 3)")
    p.add_argument("--sigma", type=float, default=5.0, help="spike threshold above the median in σ (default 5)")
    p.add_argument("--max-uncovered", type=float, default=0.03,
                   help="largest fraction of a setup that may lie outside a spectrum, filled with 1 and masked "
                        "(default 0.03: HR21 spectra start at 8484 Å, the paper's grid at 8480 Å)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args):
    from ..grid import Grid
    from ..prepare import PrepareSettings, prepare

    if args.chunk < 1 or args.workers < 1:
        raise ValueError("--chunk and --workers must be at least 1")
    settings = PrepareSettings(grid=Grid.from_spec(args.grid), sigma=args.sigma,
                               max_uncovered=args.max_uncovered, normalise=args.normalise,
                               chunk=args.chunk, workers=args.workers)
    path, n, rejects = prepare(args.catalogue, args.spectra_dir, args.out, settings,
                               progress=not args.no_progress)
    from ..io.fits_check import is_warning

    n_warn = sum(is_warning(r) for r in rejects["REASON"])
    print(f"wrote {path}: {n} stars × {settings.grid.n_pixels} pixels; {len(rejects) - n_warn} rejected spectra"
          + (f"; {n_warn} warnings (in its /rejects table)" if n_warn else ""))
