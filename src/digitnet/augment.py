"""Data augmentation: new training digits from old ones by small random distortions.

A digit shifted by a pixel, turned by a few degrees, slanted, a little larger, or written
with a slightly wobbly hand is still the same digit. Showing the network a fresh distortion
of every training image in every epoch teaches it that, and is the oldest trick for getting
a fully connected network on MNIST well past 99 % (Simard, Steinkraus & Platt 2003: a plain
800-unit MLP went from 1.6 % to 0.7 % test error with elastic distortions).

**Warping by inverse mapping.** Each *output* pixel ``p = (row, col)`` asks where it comes
from in the input, ``q = source(p)``, and takes the input's value there. (Pushing input
pixels forward instead would leave holes and collisions.) ``q`` is rarely a whole pixel, so
the value is **bilinear**: with ``q = (r0 + fr, c0 + fc)``, ``r0, c0`` whole and
``0 <= fr, fc < 1``::

    top    = x[r0, c0]     + fc * (x[r0, c0 + 1]     - x[r0, c0])
    bottom = x[r0 + 1, c0] + fc * (x[r0 + 1, c0 + 1] - x[r0 + 1, c0])
    value  = top + fr * (bottom - top)

Pixels outside the image count as 0 (background), so ink can move out of the frame and
blank paper comes in. Each value is a weighted mean of input pixels and zeros: it stays in
the input's range. :func:`bilinear` does this for a whole batch with four NumPy gathers
(``np.take`` on the zero-padded, flattened batch), no per-image loop.

**Affine part.** Coordinates are taken relative to the image centre
``c = ((h - 1) / 2, (w - 1) / 2)``. The forward map, input -> output, is::

    p = c + M (q - c) + t,      M = R(theta) Sh(phi) s

with ``t = (t_row, t_col)`` the shift in pixels, ``R`` a rotation by ``theta`` degrees
(counter-clockwise on screen, like ``np.rot90``), ``Sh`` a horizontal shear (``phi`` degrees of
slant; positive leans the top of the digit to the right: ``col' = col - tan(phi) * row``) and
``s`` a zoom (``s > 1`` makes the digit larger). Warping needs the inverse,
``q = c + M^-1 (p - c - t)``; with rows first, ``R = [[cos, -sin], [sin, cos]]`` and
``Sh = [[1, 0], [-tan phi, 1]]``, so (:func:`sampling_matrix`)::

    M^-1 = (1/s) [[1, 0], [tan phi, 1]] [[cos, sin], [-sin, cos]]

**Elastic part** (Simard et al. 2003, section 2). Draw for every pixel a random displacement
``u(p)``, each component uniform in ``[-1, 1]``, smooth the two fields with a Gaussian of
standard deviation ``sigma`` pixels and scale them by ``alpha``::

    d = alpha * (G_sigma * u)                 q = c + M^-1 (p - c - t) + d(p)

Unsmoothed, ``u`` is noise and tears strokes apart; a very large ``sigma`` averages it to
almost nothing (the field becomes a tiny translation); in between, neighbouring pixels move
together and strokes bend like a hand that trembles. Smoothing white noise of variance
``1/3`` with a 2-D Gaussian leaves variance ``(1/3) / (4 pi sigma^2)``, so away from the border
a pixel moves ``alpha / (sigma sqrt(12 pi))`` pixels per axis (root mean square): 1.4 px for
the defaults ``alpha = 34``, ``sigma = 4``, and neighbouring displacements are correlated
``exp(-1 / (4 sigma^2)) = 0.98``. The Gaussian is separable, so smoothing a ``h x w`` field
is two small matrix products, ``G_h U G_w^T`` (:func:`gaussian_matrix`, :func:`smooth`): for
a batch that is one BLAS product for the columns and one batched product for the rows, and
it equals ``scipy.ndimage.gaussian_filter(u, (0, sigma, sigma), mode="constant")``.

**Reproducible epochs.** :meth:`Augmenter.epoch` gives the image at position ``i`` of an
epoch a distortion that depends only on ``(seed, epoch, i)``: positions are grouped in blocks
of :data:`BLOCK`, and every block draws its parameters from its own generator
(``SeedSequence(seed, spawn_key=(tag, epoch, block))``), always for the whole block. The same
seed and epoch give the same images bit for bit, a different epoch fresh distortions, and
augmenting an epoch in chunks (say, batches prepared in another process) gives exactly what
augmenting it at once gives.

Defaults (:class:`Augmenter`): ``alpha = 34``, ``sigma = 4`` are Simard et al.'s MNIST
setting; Cireşan et al. (2010, "Deep, big, simple neural nets for handwritten digit
recognition", 0.35 % with an MLP) used ``sigma`` 5-6 and ``alpha`` 36-38 together with
rotations, horizontal shears and scalings of up to about 15 degrees and 15-20 %. The
affine defaults here are milder (10 degrees, 10 degrees, 10 %, 2 px) because the networks
trained here are smaller and see far fewer epochs; a training recipe should tune them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from digitnet.config import is_finite_number, is_int

Images = NDArray[Any]
Floats = NDArray[np.floating]

BLOCK = 256
"""Positions per block of :meth:`Augmenter.epoch` (part of what a seed means: changing it
changes the images). Chunks that start and end on multiples of it waste no random draws."""

_TAG = 0x6175_6700  # "aug": keeps these streams apart from other users of SeedSequence(seed)


# ------------------------------------------------------------------------ batch layout
def as_batch(images: ArrayLike, image_shape: Sequence[int] | None = None) -> Images:
    """``images`` as a batch ``(n, h, w)`` (a view where possible).

    A 3-D array is already a batch. A 2-D array is rows, one flattened image each
    ``(n, h*w)``: ``image_shape`` gives ``(h, w)``, and may be left out for square images."""
    x = np.asarray(images)
    if x.dtype.kind not in "uif":
        raise TypeError(f"images must be integers or floats, not {x.dtype}")
    if x.ndim == 3:
        if image_shape is not None and tuple(image_shape) != x.shape[1:]:
            raise ValueError(f"image_shape {tuple(image_shape)} does not match the batch "
                             f"{x.shape}")
        return x
    if x.ndim != 2:
        raise ValueError(f"expected a batch (n, h, w) or rows (n, h*w), got shape {x.shape}")
    if image_shape is None:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"rows of {x.shape[1]} pixels are not square images: "
                             "pass image_shape=(h, w)")
        image_shape = (side, side)
    h, w = (int(v) for v in image_shape)
    if h * w != x.shape[1]:
        raise ValueError(f"image_shape {(h, w)} does not hold rows of {x.shape[1]} pixels")
    return x.reshape(x.shape[0], h, w)


# ------------------------------------------------------------------------ sampling
def bilinear(images: Images, rows: Floats, cols: Floats) -> Floats:
    """Each image ``images[i]`` ``(n, h, w)`` read at ``(rows[i], cols[i])`` (any equal shapes
    ``(n, ...)``), bilinear, pixels outside the image 0.

    The same as ``scipy.ndimage.map_coordinates(..., order=1, mode="grid-constant")`` on
    each image, without the loop. Float64 images give float64 values, anything else float32.
    """
    n, h, w = images.shape
    work = np.float64 if images.dtype == np.float64 else np.float32
    # Zero border: one row/column before, two after, so that the four neighbours of any
    # coordinate clipped to [-1, h] x [-1, w] exist (clipping there changes no value: every
    # neighbour of a point beyond it is background anyway).
    H, W = h + 3, w + 3
    padded = np.zeros((n, H, W), dtype=work)
    padded[:, 1:h + 1, 1:w + 1] = images
    flat = padded.reshape(-1)
    r = np.clip(rows, -1, h)
    c = np.clip(cols, -1, w)
    r0 = np.floor(r)
    c0 = np.floor(c)
    fr = (r - r0).astype(work, copy=False)
    fc = (c - c0).astype(work, copy=False)
    # Flat index of each top-left neighbour: image i starts at i * H * W, pixel (r, c) sits
    # at (r + 1, c + 1) of its padded image (whole numbers, exact in floating point). The
    # other three neighbours are read through views of the flat batch that start 1, W and
    # W + 1 elements later, with the same index.
    r0 *= W
    r0 += c0
    index = r0.astype(np.intp)
    index += (np.arange(n, dtype=np.intp) * (H * W) + (W + 1)).reshape(
        (n,) + (1,) * (index.ndim - 1))
    top_left = np.take(flat, index)
    top = np.take(flat[1:], index)         # top right; becomes the value along the top edge
    bottom_left = np.take(flat[W:], index)
    bottom = np.take(flat[W + 1:], index)  # bottom right; becomes the bottom edge's value
    top -= top_left
    top *= fc
    top += top_left
    bottom -= bottom_left
    bottom *= fc
    bottom += bottom_left
    bottom -= top
    bottom *= fr
    bottom += top
    return bottom


def _cast_like(values: Floats, images: Images) -> Images:
    """Interpolated ``values`` ``(n, h, w)`` back to the dtype of ``images``, in range: integers
    rounded and clipped to the dtype, floats clipped to each image's range (with 0)."""
    if images.dtype.kind in "ui":
        info = np.iinfo(str(images.dtype))
        np.rint(values, out=values)
        np.clip(values, info.min, info.max, out=values)
        return values.astype(images.dtype)
    if len(images):
        low = np.minimum(images.min(axis=(1, 2)), 0).astype(values.dtype)[:, None, None]
        high = np.maximum(images.max(axis=(1, 2)), 0).astype(values.dtype)[:, None, None]
        np.clip(values, low, high, out=values)
    return values.astype(images.dtype, copy=False)


# ------------------------------------------------------------------------ affine maps
def sampling_matrix(rotation: ArrayLike = 0.0, scale: ArrayLike = 1.0,
                    shear: ArrayLike = 0.0) -> NDArray[np.float64]:
    """``M^-1`` ``(n, 2, 2)`` (rows first): where an output pixel's offset from the centre
    comes from in the input, for rotations and shears in degrees and zoom factors ``scale``
    (scalars or arrays of one value per image; a scalar gives ``n = 1``)."""
    theta, s, phi = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64))
                                          for v in (rotation, scale, shear)))
    cos, sin = np.cos(np.deg2rad(theta)), np.sin(np.deg2rad(theta))
    k = np.tan(np.deg2rad(phi))
    inverse = np.empty((*theta.shape, 2, 2))
    inverse[:, 0, 0] = cos
    inverse[:, 0, 1] = sin
    inverse[:, 1, 0] = k * cos - sin
    inverse[:, 1, 1] = k * sin + cos
    inverse /= s[:, None, None]
    return inverse


@dataclass(frozen=True)
class Distortion:
    """The distortion of each image of a batch of ``n``: what :func:`distort` applies.

    ``matrix`` ``(n, 2, 2)``: the inverse affine map ``M^-1`` (:func:`sampling_matrix`);
    ``shift`` ``(n, 2)``: ``t`` in pixels (rows, columns); ``displacement`` ``(n, 2, h, w)``
    float32 or ``None``: the elastic field ``d`` in pixels (rows, columns), added to the
    sampling coordinates."""

    matrix: NDArray[np.float64]
    shift: NDArray[np.float64]
    displacement: NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.matrix)

    def __getitem__(self, index: slice) -> Distortion:
        d = None if self.displacement is None else self.displacement[index]
        return Distortion(self.matrix[index], self.shift[index], d)

    @classmethod
    def affine(cls, n: int, shift: ArrayLike = 0.0, rotation: ArrayLike = 0.0,
               scale: ArrayLike = 1.0, shear: ArrayLike = 0.0,
               displacement: ArrayLike | None = None) -> Distortion:
        """The distortion of ``n`` images from their parameters: scalars (the same for every
        image) or one value per image; ``shift`` is ``(rows, cols)``, ``(n, 2)`` or a scalar
        for both axes; rotation and shear in degrees."""
        matrix = np.broadcast_to(sampling_matrix(rotation, scale, shear), (n, 2, 2))
        t = np.broadcast_to(np.asarray(shift, dtype=np.float64), (n, 2))
        d = None if displacement is None else np.asarray(displacement, dtype=np.float32)
        if d is not None and (d.ndim != 4 or d.shape[:2] != (n, 2)):
            raise ValueError(f"displacement must be (n, 2, h, w) with n = {n}, got {d.shape}")
        return cls(np.ascontiguousarray(matrix), np.ascontiguousarray(t), d)


def _warp(batch: Images, distortion: Distortion) -> Images:
    """One chunk ``(n, h, w)`` distorted; same dtype."""
    h, w = batch.shape[1:]
    centre_r, centre_c = np.float32((h - 1) / 2), np.float32((w - 1) / 2)
    m = distortion.matrix.astype(np.float32)
    t = distortion.shift.astype(np.float32)
    # Offsets from the centre minus the shift, per image and line: (n, h) and (n, w).
    dr = (np.arange(h, dtype=np.float32) - centre_r)[None, :] - t[:, :1]
    dc = (np.arange(w, dtype=np.float32) - centre_c)[None, :] - t[:, 1:]
    rows = (m[:, 0, 0, None] * dr + centre_r)[:, :, None] + (m[:, 0, 1, None] * dc)[:, None, :]
    cols = (m[:, 1, 0, None] * dr)[:, :, None] + (m[:, 1, 1, None] * dc + centre_c)[:, None, :]
    if distortion.displacement is not None:
        if distortion.displacement.shape[2:] != (h, w):
            raise ValueError(f"displacement fields {distortion.displacement.shape[2:]} do not "
                             f"match images {(h, w)}")
        rows += distortion.displacement[:, 0]
        cols += distortion.displacement[:, 1]
    return _cast_like(bilinear(batch, rows, cols), batch)


def distort(images: ArrayLike, distortion: Distortion,
            image_shape: Sequence[int] | None = None) -> Images:
    """``images`` (a batch ``(n, h, w)`` or rows ``(n, h*w)``) with ``distortion[i]`` applied
    to image ``i``: same shape and dtype, values in the input's range."""
    x = np.asarray(images)
    batch = as_batch(x, image_shape)
    if len(distortion) != len(batch):
        raise ValueError(f"{len(distortion)} distortions for {len(batch)} images")
    out = np.empty_like(batch)
    for lo in range(0, len(batch), BLOCK):
        out[lo:lo + BLOCK] = _warp(batch[lo:lo + BLOCK], distortion[lo:lo + BLOCK])
    return out.reshape(x.shape)


def transform(images: ArrayLike, shift: ArrayLike = 0.0, rotation: ArrayLike = 0.0,
              scale: ArrayLike = 1.0, shear: ArrayLike = 0.0,
              displacement: ArrayLike | None = None,
              image_shape: Sequence[int] | None = None) -> Images:
    """A given (not random) distortion of every image: :meth:`Distortion.affine`'s parameters
    applied by :func:`distort`. ``transform(x, shift=(2, -1))`` moves every digit two pixels
    down and one to the left."""
    n = len(as_batch(images, image_shape))
    return distort(images, Distortion.affine(n, shift, rotation, scale, shear, displacement),
                   image_shape)


# ------------------------------------------------------------------------ elastic fields
@functools.lru_cache(maxsize=32)
def gaussian_matrix(size: int, sigma: float, truncate: float = 4.0) -> NDArray[np.float32]:
    """The ``(size, size)`` matrix ``G`` with ``G @ v`` = ``v`` smoothed by a Gaussian of
    standard deviation ``sigma``, cut at ``truncate * sigma`` and 0 beyond the ends (as
    ``scipy.ndimage.gaussian_filter1d(v, sigma, mode="constant")``). Read-only, cached."""
    radius = int(truncate * sigma + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    norm = np.exp(-0.5 * (taps / sigma) ** 2).sum()
    offset = np.arange(size)[None, :] - np.arange(size)[:, None]
    g = np.where(np.abs(offset) <= radius, np.exp(-0.5 * (offset / sigma) ** 2) / norm, 0.0)
    matrix = g.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def smooth(fields: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    """Fields ``(..., h, w)`` each smoothed by a 2-D Gaussian (``sigma`` pixels, 0 outside):
    ``G_h F G_w^T``, as two matrix products for the whole stack."""
    h, w = fields.shape[-2:]
    g_rows, g_cols = gaussian_matrix(h, float(sigma)), gaussian_matrix(w, float(sigma))
    along_cols = np.ascontiguousarray(fields, dtype=np.float32).reshape(-1, w) @ g_cols.T
    return np.matmul(g_rows, along_cols.reshape(-1, h, w)).reshape(fields.shape)


def elastic_field(rng: np.random.Generator, n: int, image_shape: Sequence[int],
                  alpha: float, sigma: float) -> NDArray[np.float32]:
    """``n`` random elastic displacement fields ``(n, 2, h, w)`` in pixels (rows, columns):
    uniform in ``(-1, 1)`` per pixel and axis, Gaussian-smoothed (``sigma``), times ``alpha``.

    The uniforms have 16 bits: ``u = (2k + 1) / 2**16 - 1`` for 16-bit integers ``k`` cut,
    four at a time and little-endian, from the bit generator's raw 64-bit words (three times
    faster than ``rng.random(dtype=np.float32)`` here, and the same on any machine); after
    smoothing over ~100 pixels nobody can tell them from continuous ones. Smoothing is
    linear, so ``alpha * smooth(u) = a * smooth(k) - b * smooth(1)`` with ``a = 2 alpha / 2**16``
    and ``b = alpha (1 - 1 / 2**16)``: the integers are smoothed as they come."""
    h, w = image_shape
    size = n * 2 * h * w
    raw = rng.bit_generator.random_raw(-(-size // 4)).astype("<u8", copy=False)
    k = raw.view("<u2")[:size].astype(np.float32).reshape(n, 2, h, w)
    field = smooth(k, sigma)
    field *= np.float32(2 * alpha / 2**16)
    field -= np.float32(alpha * (1 - 2.0**-16)) * _smoothed_ones(h, w, float(sigma))
    return field


@functools.lru_cache(maxsize=32)
def _smoothed_ones(h: int, w: int, sigma: float) -> NDArray[np.float32]:
    """``smooth(1)``: 1 in the middle, less near the border (the zeros beyond it)."""
    ones = smooth(np.ones((h, w), dtype=np.float32), sigma)
    ones.setflags(write=False)
    return ones


# ------------------------------------------------------------------------ random distortions
@dataclass(frozen=True)
class Augmenter:
    """Random distortions, each parameter drawn uniformly per image within its range.

    * ``shift``: pixels, each axis in ``[-shift, shift]``;
    * ``rotation``: degrees in ``[-rotation, rotation]`` (counter-clockwise positive);
    * ``scale``: zoom factor in ``[1 - scale, 1 + scale]``;
    * ``shear``: horizontal slant, degrees in ``[-shear, shear]``;
    * ``elastic_alpha``, ``elastic_sigma``: the elastic field's strength and smoothness
      (pixels; ``alpha = 0`` turns it off), applied to a share ``elastic_probability`` of the
      images (chosen at random).

    The module docstring says where the defaults come from. ``Augmenter(0, 0, 0, 0, 0)``
    changes nothing; ``Augmenter(elastic_alpha=0)`` is affine only.
    """

    shift: float = 2.0
    rotation: float = 10.0
    scale: float = 0.1
    shear: float = 10.0
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0
    elastic_probability: float = 1.0

    def __post_init__(self) -> None:
        problems = [f"{name} must be a finite number, got {getattr(self, name)!r}"
                    for name in ("shift", "rotation", "scale", "shear", "elastic_alpha",
                                 "elastic_sigma", "elastic_probability")
                    if not is_finite_number(getattr(self, name))]
        if not problems:
            checks = [
                (self.shift >= 0, "shift must be >= 0 pixels"),
                (0 <= self.rotation <= 180, "rotation must be within [0, 180] degrees"),
                (0 <= self.scale < 1, "scale must be within [0, 1)"),
                (0 <= self.shear < 90, "shear must be within [0, 90) degrees"),
                (self.elastic_alpha >= 0, "elastic_alpha must be >= 0"),
                (self.elastic_sigma > 0, "elastic_sigma must be > 0 pixels"),
                (0 <= self.elastic_probability <= 1, "elastic_probability must be in [0, 1]"),
            ]
            problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def elastic(self) -> bool:
        """Whether any image gets an elastic distortion."""
        return self.elastic_alpha > 0 and self.elastic_probability > 0

    @property
    def is_identity(self) -> bool:
        """Whether every image comes back unchanged."""
        return not (self.shift or self.rotation or self.scale or self.shear or self.elastic)

    def scaled_for(self, image_shape: Sequence[int]) -> Augmenter:
        """These settings, which are meant for 28x28 digits, for images of ``image_shape``:
        shifts and the elastic field's smoothness scale with the side ``k = side / 28``, its
        strength ``alpha`` with ``k²`` (the field's displacement is ``∝ alpha / sigma``);
        angles and zoom are the same at any size."""
        k = min(image_shape) / 28
        if k == 1:
            return self
        return dataclasses.replace(self, shift=self.shift * k,
                                   elastic_alpha=self.elastic_alpha * k * k,
                                   elastic_sigma=self.elastic_sigma * k)

    def draw(self, rng: np.random.Generator, n: int, image_shape: Sequence[int]) -> Distortion:
        """Random distortions for ``n`` images of ``image_shape``, from ``rng``.

        Always draws ``(n, 5)`` uniforms (shift rows, shift columns, rotation, scale, shear),
        then, with elastic distortions on, ``n`` uniforms choosing the elastic images and
        their fields: the same ``rng`` state always gives the same distortions."""
        u = 2 * rng.random((n, 5)) - 1  # uniform in [-1, 1)
        displacement = None
        if self.elastic:
            chosen = rng.random(n) < self.elastic_probability
            fields = elastic_field(rng, int(chosen.sum()), image_shape, self.elastic_alpha,
                                   self.elastic_sigma)
            if fields.shape[0] == n:
                displacement = fields
            else:
                displacement = np.zeros((n, *fields.shape[1:]), dtype=np.float32)
                displacement[chosen] = fields
        return Distortion.affine(n, shift=u[:, :2] * self.shift, rotation=u[:, 2] * self.rotation,
                                 scale=1 + u[:, 3] * self.scale, shear=u[:, 4] * self.shear,
                                 displacement=displacement)

    def augment(self, images: ArrayLike, rng: np.random.Generator,
                image_shape: Sequence[int] | None = None) -> Images:
        """Fresh random distortions of ``images`` (batch or rows, any numeric dtype), drawn
        from ``rng``; same shape and dtype. Draws block by block (:data:`BLOCK` images), so
        the result depends on how the images are split between calls: use :meth:`epoch`
        where that must not matter."""
        x = np.asarray(images)
        batch = as_batch(x, image_shape)
        if self.is_identity:
            return x.copy()
        out = np.empty_like(batch)
        for lo in range(0, len(batch), BLOCK):
            chunk = batch[lo:lo + BLOCK]
            out[lo:lo + BLOCK] = _warp(chunk, self.draw(rng, len(chunk), chunk.shape[1:]))
        return out.reshape(x.shape)

    def epoch(self, images: ArrayLike, seed: int, epoch: int, start: int = 0,
              image_shape: Sequence[int] | None = None) -> Images:
        """The distorted ``images``, which are positions ``start, start + 1, ...`` of epoch
        ``epoch`` (in the order training sees them): image ``i``'s distortion depends only
        on ``(seed, epoch, start + i)``, so any split of an epoch into chunks gives the same
        bits as one call for all of it."""
        for name, value in (("seed", seed), ("epoch", epoch), ("start", start)):
            if not is_int(value, low=0):
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        x = np.asarray(images)
        batch = as_batch(x, image_shape)
        if self.is_identity:
            return x.copy()
        out = np.empty_like(batch)
        stop = start + len(batch)
        for block in range(start // BLOCK, -(-stop // BLOCK)):
            first = block * BLOCK
            lo, hi = max(start, first), min(stop, first + BLOCK)
            distortion = self.draw(block_rng(seed, epoch, block), BLOCK, batch.shape[1:])
            out[lo - start:hi - start] = _warp(batch[lo - start:hi - start],
                                               distortion[lo - first:hi - first])
        return out.reshape(x.shape)


# The named settings training offers (``TrainConfig.augment``, ``--augment``).
AUGMENTERS: dict[str, Augmenter | None] = {
    "none": None,
    "affine": Augmenter(elastic_alpha=0.0),
    "elastic": Augmenter(),
}


def block_rng(seed: int, epoch: int, block: int) -> np.random.Generator:
    """The generator of block ``block`` of epoch ``epoch`` (see :meth:`Augmenter.epoch`)."""
    sequence = np.random.SeedSequence(int(seed), spawn_key=(_TAG, int(epoch), int(block)))
    return np.random.Generator(np.random.PCG64(sequence))


def variants(images: ArrayLike, augmenter: Augmenter, n_variants: int = 8, seed: int = 0,
             image_shape: Sequence[int] | None = None) -> Images:
    """A figure's worth: ``(n, n_variants + 1, h, w)``, each image followed by
    ``n_variants`` distortions of it (epochs ``0 .. n_variants - 1`` of ``seed``)."""
    if not is_int(n_variants, low=0):
        raise ValueError(f"n_variants must be an integer >= 0, got {n_variants!r}")
    batch = as_batch(images, image_shape)
    grid = np.empty((len(batch), n_variants + 1, *batch.shape[1:]), dtype=batch.dtype)
    grid[:, 0] = batch
    for k in range(n_variants):
        grid[:, k + 1] = augmenter.epoch(batch, seed, epoch=k)
    return grid
