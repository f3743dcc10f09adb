"""A run directory remembers the settings it was made with and refuses others by name.

`starlabel demo` skips every stage whose output exists; re-running it with another seed or survey
size would otherwise reuse the old outputs and record the new settings beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_json


def check_or_record(path, settings: dict, where, fallback=None) -> None:
    """Write `settings` to `path` the first time; afterwards raise ValueError naming each setting
    that differs. `fallback(path) -> dict | None` reads older runs that have no `path` yet."""
    path = Path(path)
    old = json.loads(path.read_text()) if path.exists() else (fallback() if fallback else None)
    new = json.loads(json.dumps(settings))
    if old is None:
        write_json(path, new, indent=1)
        return
    diff = [f"{k} ({old.get(k)} there, {new.get(k)} now)" for k in sorted(new.keys() | old.keys())
            if old.get(k) != new.get(k)]
    if diff:
        raise ValueError(f"{where} holds a run made with different {', '.join(diff)}; re-run with the same "
                         "settings to resume, or use another --out (or delete that directory) to start afresh")
