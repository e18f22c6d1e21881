"""Data augmentation (digitnet.augment): exact geometry on small cases, the sampler and the
smoothing against SciPy, reproducibility (seed, epoch, chunks), dtypes and ranges, the
elastic field's statistics, and sanity on real MNIST digits."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from digitnet import augment
from digitnet.augment import BLOCK, Augmenter, Distortion, transform

NONE = Augmenter(0, 0, 0, 0, 0)
AFFINE = Augmenter(elastic_alpha=0)


def _digits(n: int = 6, side: int = 28, seed: int = 0) -> np.ndarray:
    """Synthetic uint8 'digits': random blobs of ink in the middle of dark images."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, side, side))
    x[:, side // 4:3 * side // 4, side // 4:3 * side // 4] = rng.random((n, side // 2, side // 2))
    x = ndimage.gaussian_filter(x, (0, 1, 1))
    return np.round(255 * x / x.max()).astype(np.uint8)


# ------------------------------------------------------------------------ exact geometry
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.int16])
def test_identity_settings_return_the_input_unchanged(dtype: Any) -> None:
    x = _digits().astype(dtype)
    rows = x.reshape(len(x), -1)
    for images in (x, rows):
        assert np.array_equal(transform(images), images)
        out = NONE.epoch(images, seed=3, epoch=1)
        assert out.dtype == images.dtype and np.array_equal(out, images)
        assert np.array_equal(NONE.augment(images, np.random.default_rng(0)), images)
    # a pure zoom of 1, a zero rotation and no field through the sampler: the same bits
    zero = np.zeros((len(x), 2, 28, 28), dtype=np.float32)
    assert np.array_equal(transform(x, rotation=0.0, scale=1.0, displacement=zero), x)


def _roll_with_zeros(x: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``np.roll`` by ``(dr, dc)`` pixels with what wraps around set to 0."""
    out = np.roll(x, (dr, dc), axis=(1, 2))
    h, w = x.shape[1:]
    rows, cols = np.arange(h) - dr, np.arange(w) - dc  # where each output pixel came from
    out[:, (rows < 0) | (rows >= h)] = 0
    out[:, :, (cols < 0) | (cols >= w)] = 0
    return out


@pytest.mark.parametrize("shift", [(2, -3), (-1, 0), (0, 5), (-7, -7), (30, 0)])
def test_an_integer_shift_is_a_roll_with_zero_fill(shift: tuple[int, int]) -> None:
    x = _digits()
    expected = _roll_with_zeros(x, *shift)
    assert np.array_equal(transform(x, shift=shift), expected)
    # rows and batches agree, and the content moves down/right for positive shifts
    rows = transform(x.reshape(len(x), -1), shift=shift)
    assert rows.shape == (len(x), 28 * 28) and np.array_equal(rows.reshape(x.shape), expected)


@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_a_rotation_by_quarter_turns_is_rot90(k: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((4, 15, 15))  # square, any content: whole pixels land on whole pixels
    turned = transform(x, rotation=90.0 * k)
    np.testing.assert_allclose(turned, np.rot90(x, k, axes=(1, 2)), atol=1e-6)
    u8 = _digits(side=16)
    assert np.array_equal(transform(u8, rotation=90.0 * k), np.rot90(u8, k, axes=(1, 2)))


def test_rotation_turns_the_way_robustness_damage_does() -> None:
    from digitnet.robustness import damage

    x = _digits().astype(np.float64) / 255  # ink away from the border
    for angle in (15.0, -40.0):
        np.testing.assert_allclose(transform(x, rotation=angle), damage(x, rotation=angle),
                                   atol=1e-6)


def test_shear_slants_a_vertical_bar_top_to_the_right() -> None:
    bar = np.zeros((1, 21, 21))
    bar[0, 2:19, 10] = 1.0
    slanted = transform(bar, shear=45.0)[0]
    # tan(45) = 1: a row r pixels above the centre moves r pixels right
    assert slanted[2, 18] > 0.99 and slanted[18, 2] > 0.99 and slanted[10, 10] > 0.99
    assert slanted[2, 10] < 0.01


def test_scale_enlarges_about_the_centre() -> None:
    square = np.zeros((1, 28, 28))
    square[0, 11:17, 11:17] = 1.0  # 6 x 6, centred at 13.5
    double = transform(square, scale=2.0)[0]
    assert double.sum() == pytest.approx(4 * square.sum(), rel=0.05)
    # output row p reads input row 13.5 + (p - 13.5) / 2: rows 9-18 read only ink
    assert double[9:19, 9:19].min() > 0.99 and double[:7].max() == 0 and double[:, 21:].max() == 0


def test_per_image_parameters() -> None:
    x = _digits(3)
    out = transform(x, shift=np.array([[1, 0], [0, 0], [0, -2]]), rotation=[0.0, 90.0, 0.0])
    assert np.array_equal(out[0], _roll_with_zeros(x[:1], 1, 0)[0])
    assert np.array_equal(out[1], np.rot90(x[1]))
    assert np.array_equal(out[2], _roll_with_zeros(x[2:], 0, -2)[0])


def test_a_displacement_field_moves_pixels_by_its_value() -> None:
    x = _digits(2)
    field = np.zeros((2, 2, 28, 28), dtype=np.float32)
    field[:, 0] = -2.0  # read two rows higher: the content moves down by 2
    field[:, 1] = 1.0
    assert np.array_equal(transform(x, displacement=field), _roll_with_zeros(x, 2, -1))


# ------------------------------------------------------------------------ against SciPy
def test_bilinear_matches_scipy_map_coordinates() -> None:
    rng = np.random.default_rng(2)
    images = rng.random((5, 9, 11))
    rows = rng.uniform(-3, 12, (5, 9, 11))
    cols = rng.uniform(-3, 14, (5, 9, 11))
    rows[0, 0, :4] = [-1, 0, 8, 9]  # whole pixels and the edges themselves
    cols[0, 0, :4] = [0, -1, 10, 11]
    ours = augment.bilinear(images, rows, cols)
    for i in range(5):
        ref = ndimage.map_coordinates(images[i], [rows[i], cols[i]], order=1,
                                      mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(ours[i], ref, atol=1e-12)
    assert augment.bilinear(images.astype(np.uint8), rows, cols).dtype == np.float32


@pytest.mark.parametrize(("shape", "sigma"), [((28, 28), 4.0), ((9, 17), 1.3), ((5, 5), 6.0)])
def test_separable_smoothing_is_scipys_gaussian_filter(shape: tuple[int, int],
                                                       sigma: float) -> None:
    fields = np.random.default_rng(3).uniform(-1, 1, (7, 2, *shape)).astype(np.float32)
    ref = ndimage.gaussian_filter(fields, (0, 0, sigma, sigma), mode="constant")
    np.testing.assert_allclose(augment.smooth(fields, sigma), ref, atol=1e-6)
    g = augment.gaussian_matrix(shape[0], sigma)
    assert not g.flags.writeable and np.allclose(g, g.T)


def test_the_sampling_matrix_inverts_rotation_shear_and_scale() -> None:
    theta, phi, s = np.deg2rad(30.0), np.deg2rad(12.0), 1.3
    rotate = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shear = np.array([[1.0, 0.0], [-np.tan(phi), 1.0]])
    forward = rotate @ shear * s
    inverse = augment.sampling_matrix(30.0, 1.3, 12.0)[0]
    np.testing.assert_allclose(inverse @ forward, np.eye(2), atol=1e-12)


# ------------------------------------------------------------------------ reproducibility
def test_same_seed_and_epoch_give_the_same_bits_and_other_epochs_fresh_ones() -> None:
    x = _digits(40)
    aug = Augmenter()
    first = aug.epoch(x, seed=5, epoch=0)
    assert np.array_equal(first, aug.epoch(x.copy(), seed=5, epoch=0))
    for other in (aug.epoch(x, seed=5, epoch=1), aug.epoch(x, seed=6, epoch=0)):
        differs = np.array([not np.array_equal(a, b) for a, b in zip(first, other, strict=True)])
        assert differs.all()
    rng_run = aug.augment(x, np.random.default_rng(9))
    assert np.array_equal(rng_run, aug.augment(x, np.random.default_rng(9)))
    assert not np.array_equal(rng_run, aug.augment(x, np.random.default_rng(10)))


def test_an_epoch_in_chunks_equals_the_epoch_at_once() -> None:
    x = _digits(2 * BLOCK + 37, side=12)
    aug = Augmenter(elastic_probability=0.7)
    whole = aug.epoch(x, seed=1, epoch=4)
    cuts = [0, 1, 100, BLOCK, BLOCK + 3, 2 * BLOCK + 1, len(x)]
    parts = [aug.epoch(x[a:b], seed=1, epoch=4, start=a) for a, b in itertools.pairwise(cuts)]
    assert np.array_equal(np.concatenate(parts), whole)
    # a chunk knows only its own positions: the same image at another position differs
    assert not np.array_equal(aug.epoch(x[1:2], seed=1, epoch=4, start=0), whole[1:2])
    # and the layout of the input does not matter
    rows = aug.epoch(x.reshape(len(x), -1), seed=1, epoch=4)
    assert np.array_equal(rows.reshape(x.shape), whole)


def test_variants_are_the_original_then_one_epoch_each() -> None:
    x = _digits(3)
    aug = Augmenter()
    grid = augment.variants(x.reshape(3, -1), aug, n_variants=4, seed=2)
    assert grid.shape == (3, 5, 28, 28) and grid.dtype == np.uint8
    assert np.array_equal(grid[:, 0], x)
    for k in range(4):
        assert np.array_equal(grid[:, k + 1], aug.epoch(x, 2, k))
    assert len({grid[0, k].tobytes() for k in range(5)}) == 5


# ------------------------------------------------------------------------ dtypes and ranges
def test_dtypes_and_ranges_are_kept() -> None:
    x = _digits(20)
    aug = Augmenter(scale=0.3, rotation=30)
    out = aug.epoch(x.reshape(20, -1), 0, 0)
    assert out.dtype == np.uint8 and out.shape == (20, 784)
    assert out.max() > 200  # ink survives
    as_float = aug.epoch(x.astype(np.float32) / 255, 0, 0)
    assert as_float.dtype == np.float32
    assert as_float.min() >= 0 and as_float.max() <= 1
    # values of float images stay in [min(0, image min), max(0, image max)] per image
    signed = np.random.default_rng(4).uniform(-3, 5, (6, 10, 10))
    out64 = aug.epoch(signed, 0, 0)
    assert out64.dtype == np.float64
    assert (out64.min(axis=(1, 2)) >= signed.min(axis=(1, 2))).all()
    assert (out64.max(axis=(1, 2)) <= signed.max(axis=(1, 2))).all()
    ints = np.random.default_rng(5).integers(-32768, 32767, (3, 8, 8), dtype=np.int16)
    assert aug.epoch(ints, 0, 0).dtype == np.int16
    # the uint8 result is the float result rounded
    exact = aug.epoch(x.astype(np.float64), 0, 0)
    assert np.abs(aug.epoch(x, 0, 0) - exact).max() <= 0.5 + 1e-3


def test_empty_batches_and_non_square_rows() -> None:
    empty = np.zeros((0, 784), dtype=np.uint8)
    assert Augmenter().epoch(empty, 0, 0).shape == (0, 784)
    rows = np.arange(6 * 35, dtype=np.uint8).reshape(6, 35)
    with pytest.raises(ValueError, match="image_shape"):
        Augmenter().epoch(rows, 0, 0)
    assert Augmenter().epoch(rows, 0, 0, image_shape=(5, 7)).shape == (6, 35)
    with pytest.raises(ValueError, match="does not hold"):
        Augmenter().epoch(rows, 0, 0, image_shape=(5, 6))


@pytest.mark.parametrize("settings_", [
    {"shift": -1}, {"rotation": 200}, {"scale": 1.0}, {"shear": 90}, {"elastic_alpha": -1},
    {"elastic_sigma": 0}, {"elastic_probability": 1.5}, {"rotation": float("nan")},
    {"shift": True},
])
def test_bad_settings_are_refused(settings_: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings_))):
        Augmenter(**settings_)


def test_bad_inputs_are_refused() -> None:
    aug = Augmenter()
    with pytest.raises(TypeError, match="bool"):
        aug.epoch(np.zeros((2, 4, 4), dtype=bool), 0, 0)
    with pytest.raises(ValueError, match="shape"):
        aug.epoch(np.zeros((2, 4, 4, 1)), 0, 0)
    with pytest.raises(ValueError, match="seed"):
        aug.epoch(np.zeros((2, 4, 4)), -1, 0)
    with pytest.raises(ValueError, match="start"):
        aug.epoch(np.zeros((2, 4, 4)), 0, 0, start=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distortions for"):
        augment.distort(np.zeros((2, 4, 4)), Distortion.affine(3))
    with pytest.raises(ValueError, match="displacement"):
        Distortion.affine(2, displacement=np.zeros((2, 4, 4)))


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(0, 9), st.integers(1, 12), st.integers(1, 12))),
       st.floats(0, 4), st.floats(0, 180), st.floats(0, 0.9), st.floats(0, 60),
       st.floats(0, 40), st.floats(0.5, 8), st.floats(0, 1), st.integers(0, 2**32),
       st.data())
def test_any_batch_keeps_shape_dtype_range_and_chunking(
    x: np.ndarray, shift: float, rotation: float, scale: float, shear: float, alpha: float,
    sigma: float, probability: float, seed: int, data: st.DataObject,
) -> None:
    aug = Augmenter(shift, rotation, scale, shear, alpha, sigma, probability)
    out = aug.epoch(x, seed, 0)
    assert out.shape == x.shape and out.dtype == np.uint8
    if len(x):
        assert out.max() <= x.max()  # a mean of pixels and background can't be brighter
    cut = data.draw(st.integers(0, len(x)))
    start = data.draw(st.integers(0, 3 * BLOCK))
    whole = aug.epoch(x, seed, 0, start=start)
    parts = [aug.epoch(x[:cut], seed, 0, start=start),
             aug.epoch(x[cut:], seed, 0, start=start + cut)]
    assert np.array_equal(np.concatenate(parts), whole)


# ------------------------------------------------------------------------ elastic fields
def test_elastic_displacements_are_centred_smooth_and_as_large_as_predicted() -> None:
    alpha, sigma, side = 34.0, 4.0, 28
    fields = augment.elastic_field(np.random.default_rng(7), 3000, (side, side), alpha, sigma)
    assert fields.shape == (3000, 2, side, side) and fields.dtype == np.float32
    centre = fields[:, :, side // 2, side // 2]
    g = augment.gaussian_matrix(side, sigma).astype(np.float64)
    # Var of smoothed uniform noise: (1/3) * sum of the squared weights, times alpha^2
    predicted = alpha * np.sqrt((g[side // 2] ** 2).sum() ** 2 / 3)
    assert predicted == pytest.approx(alpha / (sigma * np.sqrt(12 * np.pi)), rel=0.02)
    assert centre.std(axis=0) == pytest.approx([predicted, predicted], rel=0.05)
    assert np.abs(centre.mean(axis=0)).max() < 0.1  # ~ predicted / sqrt(3000) = 0.025
    assert np.abs(fields.mean()) < 0.05
    # neighbours move together: exp(-1 / (4 sigma^2)) = 0.98 for Gaussian-smoothed noise
    right = fields[:, :, side // 2, side // 2 + 1]
    down = fields[:, :, side // 2 + 1, side // 2]
    for axis in range(2):
        for other in (right, down):
            corr = np.corrcoef(centre[:, axis], other[:, axis])[0, 1]
            assert corr == pytest.approx(np.exp(-1 / (4 * sigma**2)), abs=0.01)
    # the two components are independent, far pixels hardly related
    assert abs(np.corrcoef(centre[:, 0], centre[:, 1])[0, 1]) < 0.06
    far = fields[:, 0, 2, 2]
    assert abs(np.corrcoef(centre[:, 0], far)[0, 1]) < 0.2


def test_unsmoothed_fields_are_uniform_noise() -> None:
    fields = augment.elastic_field(np.random.default_rng(8), 200, (10, 10), 1.0, 0.01)
    assert fields.min() >= -1 and fields.max() <= 1
    assert fields.var() == pytest.approx(1 / 3, rel=0.02)
    assert abs(np.corrcoef(fields[:, 0, 5, 5], fields[:, 0, 5, 6])[0, 1]) < 0.2


def test_elastic_probability_chooses_a_share_of_the_images() -> None:
    rng = np.random.default_rng(9)
    half = Augmenter(elastic_probability=0.5).draw(rng, 1000, (8, 8))
    assert half.displacement is not None
    moved = np.abs(half.displacement).max(axis=(1, 2, 3)) > 0
    assert 400 < moved.sum() < 600
    assert AFFINE.draw(rng, 10, (8, 8)).displacement is None
    assert Augmenter(elastic_probability=0).draw(rng, 10, (8, 8)).displacement is None


# ------------------------------------------------------------------------ real MNIST
def _centre_of_mass(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = images.reshape(len(images), 28, 28).astype(np.float64)
    mass = x.sum(axis=(1, 2))
    line = np.arange(28)
    centre = np.stack([(x.sum(axis=2) * line).sum(axis=1), (x.sum(axis=1) * line).sum(axis=1)],
                      axis=1) / mass[:, None]
    return centre, mass


def _blurred(images: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), 28, 28).astype(np.float32)
    return ndimage.gaussian_filter(x, (0, 1.5, 1.5)).reshape(len(images), -1)


def _nearest_neighbour_accuracy(reference: np.ndarray, y_reference: np.ndarray,
                                queries: np.ndarray, y_queries: np.ndarray) -> float:
    ref, q = _blurred(reference), _blurred(queries)
    distance = (ref**2).sum(axis=1)[None, :] - 2 * q @ ref.T
    return float((y_reference[distance.argmin(axis=1)] == y_queries).mean())


@pytest.mark.mnist
def test_mnist_digits_keep_their_ink_their_place_and_their_class(mnist: Any) -> None:
    x, y = mnist.x_train[50_000:52_000], mnist.y_train[50_000:52_000]
    assert x.dtype == np.uint8 and x.shape[1] == 784 and mnist.image_shape == (28, 28)
    centre, mass = _centre_of_mass(x)

    shifted = Augmenter(shift=2.0, rotation=10, scale=0, shear=10, elastic_alpha=0)
    out = shifted.epoch(x, seed=0, epoch=0, image_shape=mnist.image_shape)
    assert out.dtype == np.uint8 and out.shape == x.shape
    moved_centre, moved_mass = _centre_of_mass(out)
    # rotating and slanting about the middle move a centred digit's centre of mass by a
    # fraction of a pixel; the shift moves it by at most 2 pixels per axis
    assert np.abs(moved_centre - centre).max() <= 2.0 + 0.75
    assert np.abs(moved_mass / mass - 1).max() < 0.1

    default = Augmenter().epoch(x, seed=0, epoch=0)
    moved_centre, moved_mass = _centre_of_mass(default)
    assert abs((moved_mass / mass).mean() - 1) < 0.03  # ink is (on average) conserved
    assert np.abs(moved_centre - centre).mean() < 2.0  # the shift's mean is 1 per axis
    assert np.median(np.abs(moved_centre - centre)) < 1.5

    # Still the same digits: a 1-nearest-neighbour classifier on (blurred) originals finds
    # ~95 % of the originals, ~85 % of affine variants and ~65 % of the default's (pixel
    # distances are not built for distortions; chance is 10 %, a mix-up of images would be).
    ref, y_ref = mnist.x_train[:10_000], mnist.y_train[:10_000]
    assert _nearest_neighbour_accuracy(ref, y_ref, x, y) > 0.92
    affine = AFFINE.epoch(x, 0, 0)
    assert _nearest_neighbour_accuracy(ref, y_ref, affine, y) > 0.75
    assert _nearest_neighbour_accuracy(ref, y_ref, default, y) > 0.55


def test_settings_scale_with_the_image_size() -> None:
    from digitnet.augment import Augmenter

    base = Augmenter()
    assert base.scaled_for((28, 28)) is base
    small = base.scaled_for((8, 8))
    k = 8 / 28
    assert small.shift == pytest.approx(base.shift * k)
    assert small.elastic_sigma == pytest.approx(base.elastic_sigma * k)
    assert small.elastic_alpha == pytest.approx(base.elastic_alpha * k * k)
    assert (small.rotation, small.shear, small.scale) == (base.rotation, base.shear, base.scale)
