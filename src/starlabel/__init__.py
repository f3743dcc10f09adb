"""starlabel: stellar labels from survey spectra with an ensemble of CNNs.

Implements and extends Ambrosch et al. 2023 (A&A 672, A46). Each pipeline verb
(`synth`, `prepare`, `select`, `map`, `train`, `predict`, `explain`,
`evaluate`, `report`, `demo`) is a plain function and a `starlabel <verb>` command.
"""

import os as _os

__version__ = "0.1.0"

# Idle OpenMP workers sleep instead of spinning (see starlabel.cores); only if torch is not imported yet.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
