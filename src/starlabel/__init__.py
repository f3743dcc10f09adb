"""starlabel: stellar labels from survey spectra with an ensemble of CNNs.

Implements and extends Ambrosch et al. 2023 (A&A 672, A46). The estimators take arrays and the
stages take files; every pipeline verb is a function of the same name:

    import starlabel as sl
    flux, labels = sl.mock_spectra(200, seed=1)
    ens = sl.Ensemble.fit(flux, labels, names=("TEFF", "LOGG", "FE_H"), config="quick")
    result = ens.predict(flux)                       # .mean .std .noise .total, .to_table()

    sl.prepare(catalogue, spectra_dir, "dataset.h5"); sl.select("dataset.h5", "sets.h5"); ...

Names are resolved on first use, so `import starlabel` stays fast (PyTorch loads with the model).
"""

import os as _os
from importlib import import_module

__version__ = "0.1.0"

# Idle OpenMP workers sleep instead of spinning (see starlabel.cores); only if torch is not imported yet.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# public name -> module that defines it (relative to this package)
_API = {
    # estimators and data
    "Ensemble": "model.ensemble", "Prediction": "model.ensemble", "Bundle": "model.bundle",
    "BundleError": "model.bundle", "preset": "model.config", "Preset": "model.config",
    "Dataset": "io.dataset", "Grid": "grid", "Setup": "grid", "LabelSet": "labels",
    "SimilarityMap": "similarity", "MapSettings": "similarity", "QualityCuts": "labels",
    "PrepareSettings": "stages.prepare", "mock_spectra": "mock.arrays",
    # the pipeline verbs: files in, files out
    "synth": "stages.synth", "prepare": "stages.prepare", "select": "stages.select", "map": "stages.map",
    "train": "stages.train", "calibrate": "stages.calibrate", "predict": "stages.predict",
    "explain": "stages.explain", "evaluate": "stages.evaluate", "validate": "stages.validate", "report": "stages.report",
    "demo": "stages.demo",
}
__all__ = sorted(_API)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'starlabel' has no attribute {name!r}")
    value = getattr(import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
