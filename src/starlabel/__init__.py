"""starlabel: stellar labels from survey spectra with an ensemble of CNNs.

Implements and extends Ambrosch et al. 2023 (A&A 672, A46). Each pipeline verb
(`synth`, `prepare`, `select`, `map`, `train`, `predict`, `explain`,
`evaluate`, `report`, `demo`) is a plain function and a `starlabel <verb>` command.
"""

__version__ = "0.1.0"
