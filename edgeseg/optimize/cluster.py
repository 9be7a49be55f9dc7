"""Weight clustering with tfmot: each selected kernel keeps only K distinct values.

    >>> wrapped, layers = apply_clustering(model, clusters=16)  # doctest: +SKIP
    >>> model.fit(...); clustered = strip(wrapped)  # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow_model_optimization as tfmot

from edgeseg._keras import keras
from edgeseg.device.errors import ConfigError
from edgeseg.optimize.selection import choose, selected_names

_clustering = tfmot.clustering.keras


def apply_clustering(model, *, clusters: int, preserve_sparsity: bool = False):
    """Wrap the selected kernels of ``model`` for clustering; returns (wrapped model, layer names).

    Centroids start from k-means++ over each kernel. ``preserve_sparsity`` keeps pruned zeros at
    zero (a model that was pruned first).
    """
    if not isinstance(clusters, int) or clusters < 2:
        raise ConfigError(f"--cluster must be an integer >= 2 (got {clusters!r})")
    chosen = selected_names(choose(model))

    def wrap(layer):
        if layer.name not in chosen:
            return layer
        return _clustering.cluster_weights(
            layer, number_of_clusters=clusters,
            cluster_centroids_init=_clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
            preserve_sparsity=preserve_sparsity)

    return keras.models.clone_model(model, clone_function=wrap), tuple(sorted(chosen))


def strip(model):
    """The plain Keras model, clustering wrappers removed, clustered values kept."""
    return _clustering.strip_clustering(model)


__all__ = ["apply_clustering", "strip"]
