"""`starlabel calibrate`: the model-error term of each label, measured on spectra the bundle did not train
on, so that E_<LABEL>_TOTAL of `predict --noise-draws` covers 68 % of the errors (MODEL/calibration.json).
The reference must be about as precise as the labels (benchmark stars, seismic log g, a mock's truth):
against a catalogue with errors several times the error bars, σ_model says how exact those errors are."""


def add_parser(sub):
    p = sub.add_parser("calibrate", help="calibrate a bundle's error bars on its held-out test spectra",
                       description=__doc__)
    p.add_argument("model", help="model bundle directory written by `starlabel train`")
    p.add_argument("sets", help="the SETS.h5 the bundle was trained on (its test split is labelled)")
    p.add_argument("--reference", metavar="TABLE",
                   help="reference labels (CNAME + label columns, E_<LABEL> optional; FITS/CSV/ECSV), e.g. a mock "
                        "survey's truth.fits (default: the catalogue labels of SETS.h5, E_<LABEL> taken out)")
    p.add_argument("--rows", choices=("test", "held-out"), default="test",
                   help="test: the bundle's test split (default); held-out: also the observed set, for references "
                        "whose stars sit anywhere (spectra unlike the training set then widen every bar)")
    p.add_argument("--noise-draws", type=int, default=4, metavar="K",
                   help="noisy copies per spectrum and network, as `predict --noise-draws` (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    p.add_argument("--chunk", type=int, default=512, help="spectra labelled at a time (default 512)")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run)


def run(args):
    from ..stages.calibrate import calibrate

    record = calibrate(args.model, args.sets, reference=args.reference, rows=args.rows,
                       noise_draws=args.noise_draws, seed=args.seed, chunk=args.chunk,
                       device=args.device, threads=args.threads, progress=not args.no_progress)
    print(f"{'label':<8}{'sigma_model':>12}{'within 1σ before':>18}{'after':>8}{'within 2σ':>11}")
    for name, c in record["labels"].items():
        if not c["n"]:
            print(f"{name:<8}{'–':>12}  (no reference label)")
            continue
        print(f"{name:<8}{c['sigma_model']:>12.4g}{c['within_1sigma_before']:>18.2f}{c['within_1sigma']:>8.2f}"
              f"{c['within_2sigma']:>11.2f}")
    print(f"wrote {args.model}/calibration.json ({record['n_spectra']} {args.rows} spectra against "
          f"{record['reference']})")
