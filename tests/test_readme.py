"""The README's Python example runs as written (a doctest), and `import starlabel as sl` exposes
the objects and one function per pipeline verb."""

import doctest
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
VERBS = ("synth", "prepare", "select", "map", "train", "calibrate", "predict", "explain", "evaluate", "validate",
         "report", "demo")


def test_every_verb_is_a_function_of_the_same_name():
    import starlabel as sl
    import starlabel.stages.map  # noqa: F401  (importing a stage module must not hide the verb)
    import starlabel.mock.survey  # noqa: F401

    for verb in VERBS:
        assert callable(getattr(sl, verb)), verb
        assert getattr(sl, verb).__name__ == verb, verb
    for name in ("Ensemble", "Dataset", "Grid", "SimilarityMap", "preset", "Bundle"):
        assert getattr(sl, name) is not None
    with pytest.raises(AttributeError):
        sl.no_such_thing


@pytest.mark.slow
def test_readme_python_example(tmp_path, monkeypatch):
    import logging

    monkeypatch.chdir(tmp_path)
    # as in a fresh Python session: no console handler left behind by a CLI test in this process
    monkeypatch.setattr(logging.getLogger("starlabel"), "handlers", [])
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 5, "the README lost its Python example"
    assert result.failed == 0


def _heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (lower case, punctuation dropped, spaces → '-',
    repeats numbered); '#' lines inside code blocks are not headings."""
    anchors, seen, in_code = set(), {}, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not re.match(r"#{1,6} ", line):
            continue
        title = re.sub(r"[`*]", "", line.lstrip("#").strip()).lower()
        slug = "".join(c for c in title if c.isalnum() or c in "-_ ").replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_every_link_to_a_section_of_the_docs_finds_it():
    docs = [README, *sorted((README.parent / "docs").glob("*.md"))]
    broken = []
    for md in docs:
        for target in re.findall(r"\]\(([^)\s]*#[^)\s]*)\)", md.read_text()):
            path, anchor = target.split("#", 1)
            dest = md.parent / path if path else md
            if not dest.is_file() or anchor not in _heading_anchors(dest.read_text()):
                broken.append(f"{md.name}: {target}")
    assert not broken, broken
    assert "sim-to-real-labels-of-the-real-sun" in _heading_anchors(README.read_text())
