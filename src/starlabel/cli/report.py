"""`starlabel report`: one self-contained HTML page (figures embedded) for a run directory."""


def add_parser(sub):
    p = sub.add_parser("report", help="write a self-contained HTML report of a run directory",
                       description=__doc__ + " See starlabel.stages.report for the RUN_DIR layout.")
    p.add_argument("run_dir", help="run directory as written by `starlabel demo`")
    p.add_argument("--out", help="output HTML file (default: RUN_DIR/report.html)")
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from ..stages.report import report

    out = report(args.run_dir, args.out or Path(args.run_dir) / "report.html")
    print(f"wrote {out}")
