"""`starlabel predict`: label a dataset with a trained ensemble (mean and spread per label)."""


def add_parser(sub):
    p = sub.add_parser("predict", help="label spectra with a trained ensemble", description=__doc__)
    p.add_argument("model", help="model bundle directory written by `starlabel train`")
    p.add_argument("dataset", help="DATASET.h5 or SETS.h5 on the model's wavelength grid")
    p.add_argument("--out", required=True, help="output FITS table")
    p.add_argument("--carry", default="", help="comma-separated catalogue columns to copy to the output")
    p.add_argument("--chunk", type=int, default=512,
                   help="spectra read and labelled at a time: bounds memory, and the progress bar moves per chunk "
                        "(default 512; the noise draws are seeded per chunk)")
    p.add_argument("--map", metavar="MAP.h5", help="attach INNER/OUTLIER flags from this similarity map "
                   "(spectra not on the map are placed onto it)")
    p.add_argument("--compile", action="store_true",
                   help="compile the first convolution block (faster for large catalogues)")
    p.add_argument("--noise-draws", type=int, default=0, metavar="K",
                   help="also label K noisy copies of each spectrum per network: adds E_<LABEL>_NOISE "
                   "(noise-propagated uncertainty) and E_<LABEL>_TOTAL; costs K more predictions")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    p.add_argument("--model-spectra", nargs="?", const="auto", choices=("auto", "onelayer", "emulator"),
                   metavar="ENGINE",
                   help="also write the model spectrum at each star's predicted labels (OUT stem + _model.h5) and "
                        "add CHI2_<SETUP>, DOMAIN_CHI2, DOMAIN_FLAG, MODEL_FLAG: does the spectrum look like its "
                        "labels? ENGINE: emulator (PySME; the mock survey's default engine), onelayer (for ensembles "
                        "trained on a one-layer mock) or auto (default: the emulator when one loads)")
    p.add_argument("--domain-threshold", type=float, metavar="CHI2",
                   help="reduced chi2 above which DOMAIN_FLAG is set (default: starlabel.evaluation.domain."
                        "DEFAULT_THRESHOLD, chosen on mock spectra; docs/experiments.md)")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"], default="fp32",
                   help="fp32 (default), or mixed precision where it keeps the labels of the first 256 spectra "
                        "within 1 K / 0.001 dex of fp32 (else fp32 is used and a warning says why); auto tries "
                        "bf16 then fp16 (GPU)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    p.add_argument("--scheduler", metavar="local[:N]|ADDRESS|FILE",
                   help="label on a Dask cluster: 'local:N' starts N single-threaded worker processes here; "
                        "tcp://host:port or a scheduler file connects to a running one (e.g. dask-jobqueue on "
                        "SLURM, see the README); finished blocks are kept in OUT.parts/ and not redone on rerun")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run)


def run(args):
    from ..stages.predict import predict

    carry = [c.strip() for c in args.carry.split(",") if c.strip()]
    path = predict(args.model, args.dataset, args.out, carry=carry, chunk=args.chunk, map_path=args.map,
                   compile=args.compile, noise_draws=args.noise_draws, seed=args.seed,
                   device=args.device, threads=args.threads, precision=args.precision,
                   progress=not args.no_progress, model_spectra=args.model_spectra,
                   domain_threshold=args.domain_threshold, scheduler=args.scheduler)
    print(f"wrote {path}")
