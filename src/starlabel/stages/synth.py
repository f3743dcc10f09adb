"""`synth`: write a mock Gaia-ESO survey (spectra files, catalogue, truth) to a directory."""

from __future__ import annotations

from ..mock.survey import make_survey


def synth(out, n_stars: int, seed: int = 0, workers: int = 2, progress: bool = True, **kwargs) -> dict:
    """`starlabel synth survey`: the mock survey of `n_stars` stars in `out`; returns its summary
    (see `synth.survey.make_survey`)."""
    return make_survey(out, n_stars, seed=seed, workers=workers, progress=progress, **kwargs)
