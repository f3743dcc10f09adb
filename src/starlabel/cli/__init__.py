"""The `starlabel` command: one subcommand per pipeline verb.

Each verb lives in its own module `starlabel.cli.<verb>` exposing
`add_parser(subparsers)`; the parser only parses and calls the stage function.
Heavy imports happen inside the handlers so that `starlabel --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from .. import __version__

VERBS = ("synth", "prepare", "select", "map", "train", "calibrate", "predict", "explain", "evaluate", "validate",
         "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starlabel",
        description="Stellar labels from survey spectra with an ensemble of CNNs (Ambrosch et al. 2023).",
    )
    parser.add_argument("--version", action="version", version=f"starlabel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print debugging detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    parser.set_defaults(_verb_parsers=sub.choices)
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


def describe_oserror(e: OSError) -> str:
    """One line naming the path and the cause, e.g. "/data/run/sets.h5: No space left on device".

    h5py packs both into a long strerror; an atomic write's temporary name is shown as the output's."""
    if e.errno is None or not e.strerror:
        return str(e)  # raised by starlabel with its own message
    cause, paths = e.strerror, [str(f) for f in (e.filename, e.filename2) if f is not None]
    h5 = re.search(r"name = '([^']*)'.*error message = '([^']*)'", cause)
    if h5:
        paths, cause = paths or [h5.group(1)], h5.group(2)
    paths = [re.sub(r"(^|/)\.([^/]+)\.tmp\d+$", r"\1\2", f) for f in paths]
    return f"{' -> '.join(paths)}: {cause}" if paths else cause


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the verb's own usage, not the top-level one
        verb_parser = args._verb_parsers.get(getattr(args, "verb", None) or "", parser)
        verb_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from ..io.lock import LockedError

    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, LockedError) as e:
        print(f"starlabel {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # read-only file system, disk full, --out under a regular file, missing input
        print(f"starlabel {args.verb}: error: {describe_oserror(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"starlabel {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
