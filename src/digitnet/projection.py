"""The test set as points, layer by layer: what each layer makes of the images.

Every layer maps an image to a vector: the input layer holds its pixels, each hidden layer
``a_l`` its units' outputs, the output layer the logits ``z``. Projecting these vectors onto
a plane shows how the network pulls the classes apart, from the tangled input towards ten
separate clusters at the output:

* :func:`pca_2d`: principal component analysis, the plane along which the points vary most
  (an SVD of the centred points: deterministic and fast);
* :func:`tsne_2d`: t-SNE (scikit-learn), which keeps neighbours near each other and shows
  clusters more clearly, but whose distances between clusters mean little. Slower: use it on
  a sample of a few thousand points.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from digitnet.explain import forward_with_activations
from digitnet.network import DTYPES, MLP

Array = NDArray[np.floating]


def layer_representations(network: MLP, x: Array) -> list[tuple[str, Array]]:
    """``[(name, values), ...]`` for the input, every hidden layer and the output logits,
    for the scaled inputs ``x`` ``(n, n_inputs)``; each ``values`` is ``(n, width)``."""
    x = np.asarray(x, dtype=DTYPES[network.dtype])
    logits, hidden = forward_with_activations(network, x.copy())
    layers = [(f"input ({network.n_inputs} pixels)", x)]
    layers += [(f"hidden {i} ({h.shape[1]} {network.activation})", h)
               for i, h in enumerate(hidden, start=1)]
    layers.append((f"output ({network.n_classes} logits)", logits))
    return layers


def pca_2d(values: Array) -> NDArray[np.float64]:
    """The first two principal components of ``values`` ``(n, d)``, ``(n, 2)``.

    The points are centred and projected onto the two right singular vectors of the largest
    singular values; each axis's sign is fixed (its largest loading positive), so the same
    points always give the same picture."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or len(v) < 2:
        raise ValueError(f"expected at least two points as an (n, d) array, got {v.shape}")
    centred = v - v.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    points = centred @ (axes * signs[:, None]).T
    if points.shape[1] < 2:  # one-dimensional data: the second axis is flat
        points = np.column_stack([points, np.zeros(len(points))])
    return points


def tsne_2d(values: Array, seed: int = 0, perplexity: float = 30.0) -> NDArray[np.float64]:
    """A t-SNE embedding of ``values`` ``(n, d)`` in two dimensions, ``(n, 2)`` (seeded).

    Wide layers are first reduced to 50 principal components (the usual speed-up; t-SNE
    only looks at neighbourhoods, which these keep)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or len(v) < 5:
        raise ValueError(f"t-SNE needs at least five points as an (n, d) array, got {v.shape}")
    if v.shape[1] > 50 and len(v) > 50:
        v = PCA(n_components=50, random_state=seed).fit_transform(v)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (len(v) - 1) / 3),
                init="pca", random_state=seed)
    return np.asarray(tsne.fit_transform(v), dtype=np.float64)


def sample_indices(n_total: int, n: int, seed: int = 0) -> NDArray[np.intp]:
    """``min(n, n_total)`` distinct indices of ``range(n_total)``, seeded, in increasing order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_total)[: min(n, n_total)])
