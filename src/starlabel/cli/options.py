"""Options that override a settings dataclass: the defaults live only in the dataclass.

Each such option defaults to None ("keep the dataclass's value"); its help shows the dataclass's default.
"""

from __future__ import annotations

import dataclasses


def default(cls, field: str) -> str:
    """'(default X)' for one field of a settings dataclass."""
    value = {f.name: f for f in dataclasses.fields(cls)}[field].default
    return f"(default {'off' if value is None else value})"


def settings(cls, args, base=None, **renamed):
    """`base` (or cls()) with every field whose option was given replaced; `renamed` maps a field to
    the argparse attribute when their names differ. Validation stays in the dataclass."""
    base = base if base is not None else cls()
    names = {f.name: renamed.get(f.name, f.name) for f in dataclasses.fields(cls)}
    given = {f: getattr(args, a) for f, a in names.items() if getattr(args, a, None) is not None}
    return dataclasses.replace(base, **given)
