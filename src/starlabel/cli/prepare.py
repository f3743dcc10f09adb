"""`starlabel prepare`: clean, rest-frame shift, resample and concatenate survey spectra (paper Sect. 2.1)."""


def add_parser(sub):
    p = sub.add_parser("prepare", help="clean, shift and resample spectra onto the grid → dataset HDF5",
                       description=__doc__)
    p.add_argument("catalogue", help="catalogue (FITS/CSV) with CNAME; SETUP, VRAD, FILENAME, SPEC_RES used if present")
    p.add_argument("spectra_dir", help="directory of spectra: Gaia-ESO CASU products (gir_<CNAME>_H875.7.fit), "
                                       "<CNAME>_<SETUP>.fits, ESO Phase 3 tables, 1-D WCS images or text; "
                                       "matched to the catalogue by the CNAME in their name or header")
    p.add_argument("--out", required=True, help="output DATASET.h5")
    p.add_argument("--grid", default="HR10,HR21",
                   help="comma-separated setups: HR10, HR15N, HR21 (GIRAFFE), U580 (UVES), HRS_B/HRS_G/HRS_R "
                        "(4MOST HRS), WHR_B/WHR_R (WEAVE HR); named grids GES (=HR10,HR21), 4MOST-HRS, WEAVE-HR, "
                        "UVES580; or NAME:start:stop:step[:R] segments (default: the paper's HR10,HR21)")
    p.add_argument("--chunk", type=int, default=256, help="stars per work unit (default 256)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--scheduler", metavar="local[:N]|ADDRESS|FILE",
                   help="read and clean the chunks of stars on a Dask cluster instead of --workers processes: "
                        "'local:N' starts N worker processes here, tcp://host:port or a scheduler file connects to "
                        "a running one (see the README); finished chunks are kept in OUT.parts/ and not redone")
    p.add_argument("--normalise", action="store_true",
                   help="fit and divide a continuum (for unnormalised spectra, e.g. ESO Phase 3; reads the "
                        "final_spectrum + final_ivar of Gaia-ESO products instead of normalised_spectrum)")
    p.add_argument("--unnormalised", choices=("normalise", "reject"), default="normalise",
                   help="without --normalise, a spectrum whose flux is not continuum-normalised (median outside "
                        "1/3-3) is normalised with a warning (default) or rejected")
    p.add_argument("--rest-frame", action="store_true",
                   help="the spectra are already in the rest frame: no Doppler shift (catalogue VRAD ignored)")
    p.add_argument("--missing-setups", choices=("keep", "reject"), default="keep",
                   help="a star without a spectrum in some grid setup: keep it with that setup masked "
                        "(MISSING_SETUP column, mask bit 8; default) or reject it (the paper)")
    p.add_argument("--input-resolution", type=float, default=None, metavar="R",
                   help="resolving power of every input spectrum (else the file's SPEC_RES, the catalogue's "
                        "SPEC_RES/RESOLUTION, or the nominal R of the setup the file names)")
    p.add_argument("--no-resolution-matching", action="store_true",
                   help="do not degrade spectra sharper than the setup's resolving power")
    p.add_argument("--no-errors", action="store_true",
                   help="do not write the files' error spectra as /error (it doubles the dataset's size; "
                        "`predict --model-spectra` then estimates σ from each spectrum by DER_SNR)")
    p.add_argument("--sigma", type=float, default=5.0, help="spike threshold above the median in σ (default 5)")
    p.add_argument("--max-uncovered", type=float, default=0.03,
                   help="largest fraction of a setup that may lie outside a spectrum, filled with 1 and masked "
                        "(default 0.03: HR21 spectra start at 8484 Å, the paper's grid at 8480 Å)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args):
    from ..grid import Grid
    from ..stages.prepare import PrepareSettings, prepare

    if args.chunk < 1 or args.workers < 1:
        raise ValueError("--chunk and --workers must be at least 1")
    settings = PrepareSettings(grid=Grid.from_spec(args.grid), sigma=args.sigma,
                               max_uncovered=args.max_uncovered, normalise=args.normalise,
                               unnormalised=args.unnormalised, rest_frame=args.rest_frame,
                               missing_setups=args.missing_setups, input_resolution=args.input_resolution,
                               match_resolution=not args.no_resolution_matching,
                               errors=not args.no_errors, chunk=args.chunk, workers=args.workers)
    path, n, rejects = prepare(args.catalogue, args.spectra_dir, args.out, settings,
                               progress=not args.no_progress, scheduler=args.scheduler)
    from ..io.fits_check import is_warning

    n_warn = sum(is_warning(r) for r in rejects["REASON"])
    print(f"wrote {path}: {n} stars × {settings.grid.n_pixels} pixels; {len(rejects) - n_warn} rejected spectra"
          + (f"; {n_warn} warnings (in its /rejects table)" if n_warn else ""))
