"""`starlabel train`: train the CNN ensemble on the training set of SETS.h5 (resumable)."""

import argparse


def add_parser(sub):
    p = sub.add_parser("train", help="train the CNN ensemble and write a model bundle", description=__doc__)
    p.add_argument("sets", help="SETS.h5 written by `starlabel select` (uses rows with SET == 'train')")
    p.add_argument("--out", required=True, help="model bundle directory (re-run the command to resume)")
    p.add_argument("--runs", type=int, help="independent training runs (default: the preset's, 10)")
    p.add_argument("--keep", type=int, help="runs with the lowest test loss to keep (default: the preset's, 8)")
    p.add_argument("--preset", choices=("quick", "paper"), default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", default="TEFF,LOGG,MG_FE,AL_FE,FE_H",
                   help="comma-separated catalogue columns to learn (default TEFF,LOGG,MG_FE,AL_FE,FE_H)")
    p.add_argument("--max-epochs", type=int, help="override the preset's maximum number of epochs")
    p.add_argument("--patience", type=int, help="override the preset's early-stopping patience")
    p.add_argument("--weight-by-errors", action="store_true",
                   help="weight each label's squared error by 1/E_<LABEL>² from the catalogue (not in the paper)")
    p.add_argument("--noise-augment", type=float, metavar="F",
                   help="add fresh noise, F × each spectrum's own pixel noise, to every mini-batch "
                        "(default: the preset's; not in the paper)")
    p.add_argument("--mask-setups", type=float, metavar="P",
                   help="replace one setup of a training spectrum by 1.0 with probability P per mini-batch, "
                        "so that stars observed in one setup only get labels (default 0: off; not in the paper)")
    p.add_argument("--refit-output", action=argparse.BooleanOptionalAction, default=None,
                   help="after early stopping, refit the output layer by ridge regression on the last "
                        "hidden features, undoing dropout's shrinkage (default: the preset's; not in the paper)")
    p.add_argument("--exclude-windows", metavar="LOW-HIGH,...", default="",
                   help="wavelength windows in Å the networks never read (set to 1.0 in training and in every "
                        "spectrum the model labels), e.g. tellurics or the 8621-Å DIB: 8617-8625")
    p.add_argument("--exclude-elements", metavar="EL,...", default="",
                   help="exclude the listed lines of these elements (starlabel's line list, ± --exclude-halfwidth Å), "
                        "e.g. Ti,V,Cr,Mn,Co,Ni: elements whose line data the training spectra get wrong")
    p.add_argument("--exclude-halfwidth", type=float, default=0.2, metavar="Å",
                   help="Å on either side of an excluded line (default 0.2)")
    p.add_argument("--exclude-setups", metavar="SETUP,...", default="",
                   help="apply --exclude-elements only to the lines in these setups (e.g. HR10, where the line data "
                        "are missing, keeping the same elements' lines in HR21)")
    p.add_argument("--fused", action="store_true",
                   help="train all runs together (each keeps its own seed, data order, learning rate and early "
                        "stopping). On a CPU the runs train side by side, one per thread, each computing what it "
                        "would alone, dropout masks included: as fast as one run after another with --threads 1, and on shared "
                        "cores several times faster than one after another with several threads each "
                        "(docs/benchmarks.md); on a GPU as one batched network")
    p.add_argument("--scheduler", metavar="local[:N]|ADDRESS|FILE",
                   help="train the runs as tasks on a Dask cluster, one per worker: 'local:N' starts N worker "
                        "processes here, tcp://host:port or a scheduler file connects to a running one (see the "
                        "README); the workers write the checkpoints into --out, so a rerun resumes")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use: CPU affinity, cgroup quota)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run)


def run(args):
    from ..exclusion import parse_windows
    from ..stages.train import train

    # None keeps the preset's value; TrainConfig validates the rest (one clear line per bad value)
    overrides = dict(max_epochs=args.max_epochs, patience=args.patience, noise_augment=args.noise_augment,
                     refit_output=args.refit_output, weight_by_errors=args.weight_by_errors or None,
                     mask_setups=args.mask_setups)
    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    windows = parse_windows(args.exclude_windows)
    elements = [e.strip() for e in args.exclude_elements.split(",") if e.strip()]
    path = train(args.sets, args.out, labels=labels, runs=args.runs, keep=args.keep, preset=args.preset,
                 seed=args.seed, device=args.device, threads=args.threads, fused=args.fused,
                 progress=not args.no_progress, scheduler=args.scheduler, exclude_windows=windows,
                 exclude_elements=elements, exclude_halfwidth=args.exclude_halfwidth,
                 exclude_setups=[n.strip() for n in args.exclude_setups.split(",") if n.strip()], **overrides)
    print(f"wrote {path}")
