"""Check at a stage's start that its input table has the columns the stage will need.

Without it a missing column (say TEFF) passes `prepare` and `select` and only fails deep inside
`train` with a KeyError quoting every column of the catalogue.
"""

from __future__ import annotations


class MissingColumnsError(ValueError):
    """An input table lacks columns a stage needs (a ValueError: the CLI prints one line, exit 2)."""


def require_columns(colnames, needed, source, purpose: str) -> None:
    """Raise MissingColumnsError naming every column of `needed` absent from `colnames`.

    `source` names the file (or table) and `purpose` says what the columns are for."""
    have = set(colnames)
    missing = [c for c in dict.fromkeys(needed) if c not in have]
    if missing:
        s = "s" if len(missing) > 1 else ""
        raise MissingColumnsError(f"{source} has no column{s} {', '.join(missing)}, needed {purpose}")
