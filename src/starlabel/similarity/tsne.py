"""The openTSNE adapter: place new points onto a stored map without unpickling openTSNE's objects."""

from __future__ import annotations

import scipy.sparse as sp

class ReferenceAffinities:
    """Minimal openTSNE affinity object for placing new points onto a stored map.

    openTSNE's `TSNEEmbedding.transform` only needs `P` (for its shape check) and `to_new`, so the
    reference kNN structure is rebuilt from stored PCA coordinates instead of unpickling Annoy.
    """

    def __init__(self, reference, perplexity, n_jobs=1):
        from sklearn.neighbors import NearestNeighbors

        self.reference = reference
        self.perplexity = perplexity
        self.n_jobs = n_jobs
        self.P = sp.csr_matrix((len(reference), len(reference)))
        self._nn = NearestNeighbors(n_jobs=n_jobs).fit(reference)

    @property
    def n_samples(self):
        return len(self.reference)

    def to_new(self, data, perplexity=None, return_distances=False, k_neighbors="auto"):
        from openTSNE.affinity import joint_probabilities_nn

        perplexity = perplexity or self.perplexity
        k = min(self.n_samples, int(3 * perplexity)) if k_neighbors == "auto" else k_neighbors
        perplexity = min(perplexity, k / 3)
        distances, neighbors = self._nn.kneighbors(data, n_neighbors=k)
        P = joint_probabilities_nn(neighbors, distances, [perplexity], symmetrize=False,
                                   normalization="point-wise", n_reference_samples=self.n_samples,
                                   n_jobs=self.n_jobs)
        return (P, neighbors, distances) if return_distances else P
