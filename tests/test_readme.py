"""The README's Python example runs as written (a doctest), and `import starlabel as sl` exposes
the objects and one function per pipeline verb."""

import doctest
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
VERBS = ("synth", "prepare", "select", "map", "train", "predict", "explain", "evaluate", "validate", "report",
         "demo")


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
