"""Turn a real picture of a digit into the kind of image an MNIST network was trained on.

MNIST digits are light strokes on a black background, their bounding box scaled to fit a
20x20 box (aspect ratio kept, anti-aliased), placed in a 28x28 field so that the centre of
mass of the ink sits at the centre, pixel (14, 14). A photo, a scan or a canvas drawing
differs in every respect: any size and file format, dark ink on light paper, transparency,
thick marker or thin pen, digit anywhere in the frame. :func:`preprocess` repeats MNIST's
recipe on such an image, step by step:

1. **decode** (:func:`decode_image`): PNG, JPEG, BMP or GIF (first frame), with the size
   checked *before* the pixels are decoded (decompression-bomb guard), the EXIF orientation
   applied, and images larger than ``WORK_MAX_SIDE`` shrunk first;
2. **grey + alpha** (:func:`gray_and_alpha`): luminance ``Y = 0.299 R + 0.587 G + 0.114 B``
   and opacity, both in [0, 1];
3. **ink** (:func:`ink_map`): transparent pixels are composited onto a background that
   contrasts with the visible ink; the background level is the median of the image's border;
   if the border is lighter than mid-grey the digit is dark on light (paper) and the image is
   inverted. Ink is the distance from the background, scaled so the darkest stroke is 1;
   values under ``NOISE_FLOOR`` (paper grain, JPEG noise) become exactly 0, as MNIST's
   background is;
4. **crop** (:func:`crop_to_ink`) to the bounding box of the ink;
5. **strokes** (:func:`normalize_strokes`): at a working resolution of ``WORK_SCALE`` times
   the box, the mean stroke width is estimated as ``w = 2 A / P`` (ink area over half the
   perimeter, both measured on the soft image) and strokes much thinner or thicker than
   MNIST's are dilated or eroded into MNIST's range (not part of MNIST's recipe, but MNIST's
   writers all used similar pens; a 2-pixel pen line on a 1000-pixel photo would otherwise
   vanish to a faint hair);
6. **fit** (:func:`fit_to_box`): scale so the longer side is ``box`` pixels (area-averaging,
   i.e. anti-aliased), the shorter side in proportion;
7. **centre** (:func:`place_in_field`): shift by a whole number of pixels so the centre of
   mass lands on the centre of the field (clipped so no ink leaves the field).

The result has ink 1 on background 0; :func:`digitnet.predict.to_model_input` maps it to
the model's raw pixel range (0-255 for MNIST). The :class:`Layout` says how big the box
and field are: :data:`MNIST_LAYOUT` for MNIST models, :data:`FASHION_LAYOUT` (whole
28x28, box-centred) for Fashion-MNIST, and :data:`DIGITS_LAYOUT` for scikit-learn's 8x8
``digits``, which were made from 32x32 bitmaps by counting ink pixels in 4x4 blocks.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from digitnet.errors import DigitnetError

FloatImage = NDArray[np.float32]

SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF")
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 50_000_000  # a 50-megapixel photo; checked before any pixel is decoded
MAX_SIDE = 30_000


@dataclass(frozen=True)
class ImageBudget:
    """How large an image may be, in bytes and in pixels (checked from the header, before
    any pixel is decoded). Sized for the use: the command line reads photos
    (:data:`CLI_BUDGET`); the server takes drawings from a web page, many at a time
    (:data:`digitnet.web.service.SERVER_BUDGET`)."""

    max_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS
    max_side: int = MAX_SIDE


CLI_BUDGET = ImageBudget()
WORK_MAX_SIDE = 1024  # larger images are shrunk to this (longer side) right after decoding
MIN_CONTRAST = 0.08  # ink must differ from the background by 8 % of full scale
NOISE_FLOOR = 0.2  # ink below 20 % of the strongest stroke is background
WORK_SCALE = 8  # stroke analysis runs at WORK_SCALE x the box size


class ImageInputError(DigitnetError):
    """An image cannot be used: unreadable, unsupported, too large, or blank.

    Messages do not name the file; callers that know it prefix it.
    """


@dataclass(frozen=True)
class Layout:
    """Where the digit goes in the network's input image.

    Attributes
    ----------
    field : int
        Side of the square field the digit is placed in, in pixels.
    box : int
        The digit's bounding box is scaled so its longer side is ``box`` pixels.
    centering : {"mass", "box"}
        ``"mass"`` moves the centre of mass to the field's centre (MNIST); ``"box"`` centres
        the bounding box.
    stroke_range : (float, float) or None
        Mean stroke widths, in pixels at box scale, left as they are; thinner strokes are
        dilated up to the lower bound, thicker ones eroded down to the upper. ``None``
        leaves strokes alone.
    block : int
        The field is reduced by this factor at the end: each ``block x block`` cell becomes
        the fraction of its pixels that are ink (binarized at 0.5).
    """

    field: int
    box: int
    centering: Literal["mass", "box"] = "mass"
    stroke_range: tuple[float, float] | None = None
    block: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.box <= self.field or self.field % self.block:
            raise ValueError(f"inconsistent layout {self}")

    @property
    def output_shape(self) -> tuple[int, int]:
        side = self.field // self.block
        return (side, side)


# MNIST's mean stroke width, measured with stroke_width() on the MNIST training images at
# box scale, lies in [1.6, 3.1] pixels for the middle 80 % of the digits (10th-90th percentile).
MNIST_STROKE_RANGE = (1.6, 3.1)
MNIST_LAYOUT = Layout(field=28, box=20, centering="mass", stroke_range=MNIST_STROKE_RANGE)
FASHION_LAYOUT = Layout(field=28, box=28, centering="box", stroke_range=None)
# scikit-learn's digits come from thick-pen 32x32 bitmaps: measured the same way (8x8 images
# enlarged to 32x32), their stroke widths lie in [6.0, 7.6] pixels for the middle 80 %.
DIGITS_LAYOUT = Layout(field=32, box=32, centering="box", stroke_range=(5.0, 7.5), block=4)


def layout_for(image_shape: tuple[int, ...], dataset: str = "mnist") -> Layout:
    """The layout for a model's input: MNIST (28x28), Fashion-MNIST, 8x8 digits, or MNIST's
    proportions scaled to another square size."""
    if len(image_shape) != 2 or image_shape[0] != image_shape[1]:
        raise ValueError(f"only square model inputs are supported, not {image_shape}")
    side = int(image_shape[0])
    if side == 28:
        return FASHION_LAYOUT if dataset == "fashion-mnist" else MNIST_LAYOUT
    if side == 8 and dataset == "digits":
        return DIGITS_LAYOUT
    scale = side / MNIST_LAYOUT.field
    lo, hi = MNIST_STROKE_RANGE
    return Layout(field=side, box=max(1, round(MNIST_LAYOUT.box * scale)), centering="mass",
                  stroke_range=(lo * scale, hi * scale))


@dataclass
class Preprocessed:
    """The result of :func:`preprocess` and how it got there.

    ``image`` is the network's view, ``layout.output_shape``, ink 1 on background 0;
    ``steps`` maps step names to the intermediate images (for pictures and debugging).
    """

    image: FloatImage
    polarity: Literal["dark-on-light", "light-on-dark"]
    stroke_width: float  # mean stroke width before normalization, pixels at box scale
    steps: dict[str, FloatImage] = field(default_factory=dict)


# ------------------------------------------------------------------------------ decoding


def read_image_bytes(path: str | os.PathLike[str], budget: ImageBudget = CLI_BUDGET) -> bytes:
    """The bytes of an image file, refusing folders, devices, FIFOs and other files that are
    not regular files (they could be read forever), and files over the budget (never read
    past it, even if the file grows meanwhile)."""
    path = Path(path)
    limit = budget.max_bytes
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ImageInputError("is a folder, not an image file")
        if not stat.S_ISREG(mode):
            raise ImageInputError("not a regular file (a device, a pipe or a socket)")
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = b"" if size > limit else fh.read(limit + 1)
        if size > limit or len(data) > limit:
            raise ImageInputError(f"file is over the limit of {limit:,} bytes "
                                  f"({limit / 2**20:.3g} MiB); larger images are refused")
    except FileNotFoundError:
        raise ImageInputError("file not found") from None
    except OSError as exc:
        raise ImageInputError(f"cannot read the file ({exc.strerror or exc})") from None
    return data


def decode_image(data: bytes, budget: ImageBudget = CLI_BUDGET) -> Image.Image:
    """Decode PNG, JPEG, BMP or GIF bytes into a loaded Pillow image.

    The header's width and height are checked against ``MAX_PIXELS`` and ``MAX_SIDE``
    before any pixel is decoded, so a small file claiming a gigantic image (a decompression
    bomb) is refused without allocating its memory. JPEGs are decoded at reduced scale when
    larger than ``WORK_MAX_SIDE``; the EXIF orientation (phone photos) is applied; GIFs
    give their first frame. Every decoder failure becomes an :class:`ImageInputError`.
    """
    if not data:
        raise ImageInputError("empty file (0 bytes)")
    if len(data) > budget.max_bytes:
        raise ImageInputError(f"image data over the limit of {budget.max_bytes:,} bytes refused")
    names = ", ".join(SUPPORTED_FORMATS[:-1]) + f" or {SUPPORTED_FORMATS[-1]}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageInputError(f"image has no pixels ({width}x{height})")
            if width * height > budget.max_pixels or max(width, height) > budget.max_side:
                raise ImageInputError(
                    f"image is {width}x{height} pixels, over the limit of "
                    f"{budget.max_pixels:,} pixels / {budget.max_side} pixels a side "
                    "(refused before decoding: possible decompression bomb)"
                )
            if image.format == "JPEG":
                image.draft(None, (WORK_MAX_SIDE, WORK_MAX_SIDE))
            image.load()
            transposed = ImageOps.exif_transpose(image)
    except ImageInputError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageInputError(f"not a {names} image (or its header is damaged)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError("image too large to decode (possible decompression bomb)") from None
    except Exception as exc:  # any decoder failure on untrusted bytes is the file's fault
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason or isinstance(exc, EOFError):
            raise ImageInputError(f"truncated image file ({reason})") from None
        raise ImageInputError(f"corrupt image file ({reason})") from None
    return transposed if transposed is not None else image


def _normalized_mode(image: Image.Image) -> Image.Image:
    """The image as ``RGBA`` (if it has transparency), ``F`` (16/32-bit grey scaled to
    [0, 1]) or ``L``: all that the later steps need."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return image.convert("RGBA")
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        return Image.fromarray(np.clip(values / top, 0, 1).astype(np.float32), mode="F")
    return image.convert("L")


def gray_and_alpha(image: Image.Image) -> tuple[FloatImage, FloatImage | None]:
    """Luminance and opacity of ``image``, both float32 ``(H, W)`` in [0, 1].

    Luminance is Pillow's ITU-R 601-2 luma ``Y = 0.299 R + 0.587 G + 0.114 B``; palette,
    CMYK and 16-bit images are converted first. Images larger than ``WORK_MAX_SIDE`` are
    shrunk (area-averaged, premultiplied alpha) so the later steps stay fast. Opacity is
    ``None`` for images without an alpha channel.
    """
    image = _normalized_mode(image)
    if max(image.size) > WORK_MAX_SIDE:
        image.thumbnail((WORK_MAX_SIDE, WORK_MAX_SIDE), Image.Resampling.BOX)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32), None
    if image.mode == "RGBA":
        return _unit(image.convert("RGB").convert("L")), _unit(image.getchannel("A"))
    return _unit(image), None


def _unit(image: Image.Image) -> FloatImage:
    """8-bit pixel values as float32 in [0, 1]."""
    return np.asarray(np.asarray(image, dtype=np.float32) / 255, dtype=np.float32)


# ---------------------------------------------------------------------------------- ink


def _border(gray: FloatImage) -> FloatImage:
    """The pixels of a frame around the image, ``max(1, 2 %)`` of the shorter side wide."""
    k = max(1, round(0.02 * min(gray.shape)))
    return np.concatenate([gray[:k].ravel(), gray[-k:].ravel(),
                           gray[:, :k].ravel(), gray[:, -k:].ravel()])


def ink_map(
    gray: FloatImage, alpha: FloatImage | None = None
) -> tuple[FloatImage, Literal["dark-on-light", "light-on-dark"]]:
    """Ink intensity in [0, 1] with the background exactly 0 (MNIST polarity), and the
    polarity found.

    1. Alpha: ``g = a g + (1 - a) b``, where the background ``b`` is white if the visible
       ink (alpha-weighted mean luminance) is dark, else black; a drawing on a transparent
       canvas becomes a drawing on contrasting paper whatever colour its invisible pixels
       have.
    2. Background level ``b`` = median of the border pixels (digits rarely cover the border).
    3. Polarity: if ``b`` is above the midpoint of the darkest and lightest pixel, the digit
       is dark on light and ``ink = b - g``; otherwise ``ink = g - b``; negative values are 0.
    4. ``ink /= max(ink)``; a maximum below ``MIN_CONTRAST`` means there is no digit.
    5. Noise floor: ``ink = clip((ink - f) / (1 - f), 0, 1)`` with ``f = NOISE_FLOOR``.

    Raises
    ------
    ImageInputError
        If the image is blank (uniform, fully transparent, or contrast too low).
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise ImageInputError(f"expected a 2-D grey image, got shape {gray.shape}")
    if not np.isfinite(gray).all():
        raise ImageInputError("image contains non-finite values")
    if alpha is not None:
        opacity = float(alpha.sum())
        if opacity < 1e-3 * alpha.size:
            raise ImageInputError("image is blank: fully transparent")
        visible_luma = float((gray * alpha).sum()) / opacity
        paper = 1.0 if visible_luma < 0.5 else 0.0
        gray = alpha * gray + (1 - alpha) * paper
    background = float(np.median(_border(gray)))
    midpoint = (float(gray.min()) + float(gray.max())) / 2
    if background > midpoint:
        polarity: Literal["dark-on-light", "light-on-dark"] = "dark-on-light"
        ink = background - gray
    else:
        polarity = "light-on-dark"
        ink = gray - background
    np.clip(ink, 0, None, out=ink)
    contrast = float(ink.max())
    if contrast < MIN_CONTRAST:
        raise ImageInputError(
            f"image is blank: no digit found (contrast {contrast:.0%}, need {MIN_CONTRAST:.0%})"
        )
    ink = (ink / contrast - NOISE_FLOOR) / (1 - NOISE_FLOOR)
    return np.clip(ink, 0, 1).astype(np.float32), polarity


def crop_to_ink(ink: FloatImage) -> FloatImage:
    """The smallest rectangle holding every non-zero pixel."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise ImageInputError("image is blank: no digit found")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


# --------------------------------------------------------------------------- resampling


def _resize(image: FloatImage, height: int, width: int) -> FloatImage:
    """Resample a float image: area-averaging when shrinking (anti-aliased), bilinear when
    enlarging."""
    shrinking = height * width < image.shape[0] * image.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F").resize(
        (width, height), method
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 1)


def _fit_shape(shape: tuple[int, ...], long_side: int) -> tuple[int, int]:
    """``(height, width)`` with the longer side ``long_side``, aspect ratio kept (>= 1 px)."""
    h, w = shape[0], shape[1]
    scale = long_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def fit_to_box(glyph: FloatImage, box: int) -> FloatImage:
    """Scale ``glyph`` so its longer side is ``box`` pixels, aspect ratio kept, then scale
    intensities so the strongest pixel is 1 (MNIST's strokes are saturated)."""
    fitted = _resize(glyph, *_fit_shape(glyph.shape, box))
    peak = float(fitted.max())
    if peak <= 0:
        raise ImageInputError("image is blank: no digit found")
    return np.asarray(fitted / peak, dtype=np.float32)


# ------------------------------------------------------------------------------ strokes


def stroke_width(ink: FloatImage) -> float:
    """Mean stroke width ``w = 2 A / P`` in pixels of ``ink``.

    A stroke of length ``L`` and width ``w`` has area ``A = w L`` and perimeter ``P ~ 2 L``.
    ``A`` is the summed ink; ``P`` is the total variation ``sum sqrt(dx^2 + dy^2)`` of the
    zero-padded image (for an anti-aliased edge it equals the edge's length). A stroke
    thinner than a pixel measures about 1 pixel.
    """
    padded = np.pad(np.asarray(ink, dtype=np.float64), 1)
    dy = np.diff(padded, axis=0)[:, :-1]
    dx = np.diff(padded, axis=1)[:-1, :]
    perimeter = float(np.hypot(dx, dy).sum())
    return 2 * float(padded.sum()) / perimeter if perimeter > 0 else 0.0


def _morph_step(image: FloatImage, reduce: np.ufunc, diagonal: bool) -> FloatImage:
    """One 3x3 dilation (``np.maximum``) or erosion (``np.minimum``): square or cross."""
    h, w = image.shape
    padded = np.pad(image, 1)
    out = image.copy()
    offsets = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if diagonal:
        offsets += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    for dy, dx in offsets:
        reduce(out, padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], out=out)
    return out


def morph(image: FloatImage, radius: int, dilate: bool) -> FloatImage:
    """Grey dilation (or erosion) by a disc of ``radius`` pixels, approximated by an octagon:
    alternating 3x3 square and cross steps, each growing (or shrinking) strokes by about one
    pixel on every side."""
    reduce = np.maximum if dilate else np.minimum
    out = np.pad(image, radius) if dilate else image
    for i in range(radius):
        out = _morph_step(out, reduce, diagonal=i % 2 == 0)
    return out


def normalize_strokes(glyph: FloatImage, stroke_range: tuple[float, float]) -> FloatImage:
    """Bring the mean stroke width of a cropped ``glyph`` (already at working resolution,
    ``WORK_SCALE`` x box) into ``stroke_range`` (pixels at box scale) by dilation or
    erosion with a disc; the result is cropped to its ink again. An erosion that would wipe
    out the digit is skipped."""
    lo, hi = stroke_range
    width = stroke_width(glyph) / WORK_SCALE
    if lo <= width <= hi:
        return glyph
    target = lo if width < lo else hi
    radius = round(abs(target - width) * WORK_SCALE / 2)
    if radius == 0:
        return glyph
    if width < lo:
        # A line thinner than a working pixel was averaged with the background: its grey
        # level is coverage, not ink. Restore full ink before widening it.
        level = float(np.percentile(glyph[glyph > 0], 75))
        glyph = np.minimum(glyph / level, 1).astype(np.float32)
    adjusted = morph(glyph, radius, dilate=width < lo)
    if float(adjusted.max()) < 0.5:
        return glyph
    return crop_to_ink(adjusted)


# ---------------------------------------------------------------------------- placement


def center_of_mass(image: FloatImage) -> tuple[float, float]:
    """``(row, col)`` of the intensity-weighted mean pixel position."""
    total = float(image.sum())
    rows = np.arange(image.shape[0], dtype=np.float64)
    cols = np.arange(image.shape[1], dtype=np.float64)
    return (float(image.sum(axis=1) @ rows) / total, float(image.sum(axis=0) @ cols) / total)


def place_in_field(glyph: FloatImage, size: int, centering: Literal["mass", "box"]) -> FloatImage:
    """Paste ``glyph`` into a black ``size x size`` field, shifted by whole pixels so that its
    centre of mass lands on pixel ``(size / 2, size / 2)`` (``"mass"``; MNIST's mean centre
    of mass is (14.0, 14.0)) or its box is centred (``"box"``); shifts that would push ink
    out of the field are clipped."""
    h, w = glyph.shape
    if centering == "mass":
        cy, cx = center_of_mass(glyph)
        top, left = round(size / 2 - cy), round(size / 2 - cx)
    else:
        top, left = (size - h) // 2, (size - w) // 2
    top, left = min(max(top, 0), size - h), min(max(left, 0), size - w)
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + h, left : left + w] = glyph
    return out


def block_reduce(image: FloatImage, block: int) -> FloatImage:
    """Fraction of ink pixels (``>= 0.5``) in each ``block x block`` cell."""
    if block == 1:
        return image
    n = image.shape[0] // block
    ink = (image >= 0.5).astype(np.float32)
    return np.asarray(ink.reshape(n, block, n, block).mean(axis=(1, 3)), dtype=np.float32)


# ------------------------------------------------------------------------------- pipeline


def preprocess(image: Image.Image | NDArray[np.floating], layout: Layout = MNIST_LAYOUT,
               keep_steps: bool = False) -> Preprocessed:
    """Run the whole recipe (see the module docstring) on a decoded image.

    Parameters
    ----------
    image : PIL.Image.Image or array
        A decoded image (any mode), or a 2-D array of grey levels in [0, 1].
    layout : Layout
        Box and field sizes of the target network (:func:`layout_for`).
    keep_steps : bool
        Keep the intermediate images in ``Preprocessed.steps``.

    Returns
    -------
    Preprocessed
        ``.image`` has shape ``layout.output_shape``, values in [0, 1], ink bright.
    """
    if isinstance(image, Image.Image):
        gray, alpha = gray_and_alpha(image)
    else:
        gray, alpha = np.asarray(image, dtype=np.float32), None
    steps: dict[str, FloatImage] = {}
    ink, polarity = ink_map(gray, alpha)
    glyph = crop_to_ink(ink)
    working = _resize(glyph, *_fit_shape(glyph.shape, WORK_SCALE * layout.box))
    width = stroke_width(working) / WORK_SCALE
    if keep_steps:
        steps.update(gray=gray, ink=ink, crop=glyph, working=working)
    if layout.stroke_range is not None:
        working = normalize_strokes(working, layout.stroke_range)
        if keep_steps:
            steps["strokes"] = working
    boxed = fit_to_box(working, layout.box)
    placed = place_in_field(boxed, layout.field, layout.centering)
    result = block_reduce(placed, layout.block)
    if keep_steps:
        steps.update(box=boxed, field=placed, result=result)
    return Preprocessed(image=result, polarity=polarity, stroke_width=width, steps=steps)


def preprocess_bytes(data: bytes, layout: Layout = MNIST_LAYOUT,
                     budget: ImageBudget = CLI_BUDGET) -> Preprocessed:
    """:func:`decode_image` (within ``budget``) then :func:`preprocess`."""
    return preprocess(decode_image(data, budget), layout)


def preprocess_file(path: str | os.PathLike[str], layout: Layout = MNIST_LAYOUT) -> Preprocessed:
    """Read, decode and preprocess an image file; errors name the file."""
    try:
        return preprocess_bytes(read_image_bytes(path), layout)
    except ImageInputError as exc:
        raise ImageInputError(f"{path}: {exc}") from None
