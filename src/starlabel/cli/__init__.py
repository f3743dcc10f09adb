"""The `starlabel` command: one subcommand per pipeline verb.

Each verb lives in its own module `starlabel.cli.<verb>` exposing
`add_parser(subparsers)`; the parser only parses and calls the stage function.
Heavy imports happen inside the handlers so that `starlabel --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__

VERBS = ("synth", "prepare", "select", "map", "train", "predict", "explain", "evaluate", "validate", "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starlabel",
        description="Stellar labels from survey spectra with an ensemble of CNNs (Ambrosch et al. 2023).",
    )
    parser.add_argument("--version", action="version", version=f"starlabel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print debugging detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for verb in VERBS:
        try:
            module = importlib.import_module(f"{__name__}.{verb}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{verb}":
                continue  # verb not built yet
            raise
        module.add_parser(sub)
    return parser


class _Console(logging.Formatter):
    """Plain lines for information, 'warning: …' and 'error: …' for the rest."""

    def format(self, record):
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (so redirection and test capture see the messages)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(level: int) -> None:
    """The stages report through `logging`; the command prints their messages on stdout."""
    logger = logging.getLogger("starlabel")
    for h in [h for h in logger.handlers if isinstance(h, _StdoutHandler)]:
        logger.removeHandler(h)
    handler = _StdoutHandler()
    handler.setFormatter(_Console("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"starlabel {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"starlabel {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
