"""Similarity maps (paper Sects. 2.1 and 2.3): a t-SNE map of all spectra, outliers, inner/outer sets.

How the map is made
    Spectra are reduced to `n_components` (50) principal components (scikit-learn PCA, fitted on
    at most `pca_fit_max` randomly chosen spectra, which is plenty for a 50-dimensional basis),
    then embedded in 2-D with openTSNE (PCA initialisation, one seed; FFT-accelerated gradients
    from 10 000 spectra up, Barnes-Hut below, where it is faster). The neighbours t-SNE needs come
    from one exact kNN search in PCA space that the outlier scores share (faster than Annoy at 50
    dimensions, and the map does not depend on the thread count). The paper ran sklearn's exact
    t-SNE on raw pixels; PCA first is the standard speed-up and keeps the neighbourhoods.

Outliers: "unlike any other spectrum of the same quality"
    Three scores per spectrum, all measured in spectrum space so that they also work for new
    spectra that are only placed onto the map:

    - KNN: mean distance in PCA space to the nearest `group_fraction` (2 %) of the map's spectra
      (at least 10). Defects the PCA basis represents -- wrong normalisation, fast rotation,
      emission lines when there are many of them -- put a spectrum far from every normal star.
      Averaging over 2 % of the map rather than a handful of neighbours matters: like defects
      clump together (the mock survey's fast rotators form their own island in the map), and a
      clump smaller than 2 % of the survey is still far from the bulk.
    - LINE: the strongest narrow feature (3-pixel running median, then a 7-pixel boxcar: spikes
      narrower than the instrumental profile are cosmic residue that `prepare` handles) in the
      residual about the spectrum's look-alikes (the median PCA coordinates of its 10 nearest
      neighbours), in units of its noise. Emission lines and distorted line cores outside the
      PCA basis live here.
    - BROAD: the rms of the same residual smoothed over 151 pixels (≈ 9-15 Å), in noise units:
      continuum (normalisation) errors outside the PCA basis.

    The noise σ of each spectrum is estimated from its own residual (robust, from pixel-to-pixel
    differences), so no catalogue S/N is needed. Every score depends on S/N, so each log-score is
    turned into a robust z-score *relative to spectra of similar noise*: the median and MAD of the
    log-score in noise-quantile bins (≈ 80 spectra each, up to 25), interpolated in log σ.
    A spectrum is an outlier when KNN_Z > `outlier_z` (4) or LINE_Z or BROAD_Z > `residual_z` (7);
    REASON names the scores that fired. The calibration is stored in MAP.h5, so new spectra are
    judged on exactly the same scale. Tuned on two mock surveys (seeds 1 and 2, ~2 800 spectra,
    3.7-4.4 % pathological): 99 % and 96 % of the pathological spectra flagged, 1.4 % and 1.2 %
    of the others (mostly spectra with left-over cosmics or at the edge of the label space).

    The map itself is checked alongside: MAP_Z is the same kind of z-score for the mean distance
    to the 10 nearest points in the 2-D map. It goes into the table for inspection but does not
    decide, because a clump of like outliers is *dense* in the map, because t-SNE distances
    between clusters mean little, and because a placed-later spectrum has no honest map density.

Inner / outer (Sect. 2.3)
    An observed spectrum is *inner* when its distance in the map to the nearest training spectrum
    (outliers excluded) is at most `inner_distance`, and it is not an outlier; otherwise *outer*.
    By default `inner_distance` = `inner_factor` (3) × the median distance from a training spectrum
    to its nearest other training spectrum: a few typical spacings of the training cloud, so the
    inner set covers the same area as the training set, as in the paper's Fig. 4. Give an absolute
    `inner_distance` to override.

Placing new spectra without recomputing the map (beyond the paper)
    MAP.h5 stores the PCA basis (components, mean), every map spectrum's PCA coordinates and its
    map position -- plain arrays, no pickle. `SimilarityMap.load` rebuilds an openTSNE
    `TSNEEmbedding` around the stored positions with a small affinity object (`_ReferenceAffinities`)
    whose `to_new` finds the nearest reference spectra in PCA space with scikit-learn and turns
    their distances into t-SNE affinities with openTSNE's own `joint_probabilities_nn`; openTSNE's
    `TSNEEmbedding.transform` then optimises only the new points against the fixed map.
"""

__all__ = ["MapSettings", "SimilarityMap"]


def __getattr__(name):  # PEP 562: `starlabel map --help` needs only the settings, not openTSNE/astropy
    if name == "MapSettings":
        from .settings import MapSettings

        return MapSettings
    if name == "SimilarityMap":
        from .map import SimilarityMap

        return SimilarityMap
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
