"""The paper's Sect. 5 validation: one module and one function per analysis, on tables.

    benchmarks   Fig. 13   CNN vs reference labels of benchmark stars, repeat spectra
    seismic      Fig. 14   log g against asteroseismic log g
    clusters     Figs. 15, 16   globular-cluster membership, Mg–Al anticorrelation
    discs        Fig. 17   thin/thick disc with HDBSCAN in ([Fe/H], [Mg/Fe])
    orbits       Fig. 18   galpy eccentricities vs [Fe/H] per disc population
    ages         turn-off ages per disc population (UniDAM-like input)
    observed     CNN accuracy per reason a star was not in training (needs a truth table)

Each function takes the labels table (`predict` output), the catalogue and what else it needs,
and returns a `Validation` (`.table`, `.summary`, cuts in `.meta`); `validate_all` (stage.py)
runs them on files and writes tables, figures and validate.json for the report.
"""

from .ages import TurnOffBox, ages, read_ages
from .benchmarks import benchmarks
from .clusters import ClusterCuts, cluster_centres, clusters
from .common import MissingColumnError, Validation
from .discs import DiscSettings, discs
from .observed import observed
from .orbits import OrbitSettings, eccentricities, orbits
from .seismic import seismic

ANALYSES = ("benchmarks", "seismic", "clusters", "discs", "orbits", "ages", "observed")

__all__ = ["ANALYSES", "ClusterCuts", "DiscSettings", "MissingColumnError", "OrbitSettings", "TurnOffBox",
           "Validation", "ages", "benchmarks", "cluster_centres", "clusters", "discs", "eccentricities",
           "observed", "orbits", "read_ages", "seismic"]
