"""Preprocessing of real images (digitnet.imageprep), tested on synthetic drawings whose
correct result can be stated, and on real MNIST digits disguised as photos."""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitnet import imageprep as ip
from digitnet.fileio import atomic_path

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

Point = tuple[float, float]
SEVEN: list[Point] = [(0.25, 0.15), (0.75, 0.15), (0.4, 0.9)]  # in units of the drawing's size


def draw(polyline: Sequence[Point] = SEVEN, size: tuple[int, int] = (200, 200),
         origin: tuple[int, int] = (0, 0), scale: float | None = None, width: int = 14,
         ink: int = 0, paper: int = 255) -> Image.Image:
    """A grey image ``size`` with ``polyline`` (unit coordinates, scaled by ``scale`` pixels
    and shifted by ``origin``) drawn as a ``width``-pixel stroke."""
    scale = min(size) if scale is None else scale
    image = Image.new("L", size, paper)
    points = [(origin[0] + x * scale, origin[1] + y * scale) for x, y in polyline]
    ImageDraw.Draw(image).line(points, fill=ink, width=width, joint="curve")
    return image


def bbox(image: np.ndarray) -> tuple[int, int]:
    """Height and width of the bounding box of the non-zero pixels."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def shifted_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of ``a`` and ``b`` after the best shift by at most one pixel
    (centring moves whole pixels, so a tiny change of the centre of mass can move all ink)."""
    return min(float(np.abs(np.roll(a, (dy, dx), axis=(0, 1)) - b).mean())
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def result(image: Image.Image | np.ndarray, layout: ip.Layout = ip.MNIST_LAYOUT) -> np.ndarray:
    return ip.preprocess(image, layout).image


# ------------------------------------------------------------------- the MNIST recipe


def test_result_is_an_mnist_style_image() -> None:
    out = result(draw())
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    height, width = bbox(out)
    assert height == 20 and width <= 20  # the longer side fills the 20x20 box
    cy, cx = ip.center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert (out == 0).mean() > 0.6  # a black background, as in MNIST


def test_dark_on_light_and_light_on_dark_give_the_same_result() -> None:
    dark_ink = ip.preprocess(draw(ink=0, paper=255))
    light_ink = ip.preprocess(draw(ink=255, paper=0))
    assert dark_ink.polarity == "dark-on-light"
    assert light_ink.polarity == "light-on-dark"
    np.testing.assert_allclose(dark_ink.image, light_ink.image, atol=1e-6)


def test_grey_paper_and_grey_ink_give_the_same_result_as_black_and_white() -> None:
    # a photo: pencil (grey 90) on grey paper (170); the paper must become exactly 0
    photo = result(draw(ink=90, paper=170))
    np.testing.assert_allclose(photo, result(draw()), atol=1e-6)


@pytest.mark.parametrize("hidden_rgb", [(0, 0, 0), (255, 255, 255), (255, 0, 0)])
def test_transparent_background_is_composited_whatever_its_hidden_colour(hidden_rgb) -> None:
    # A "7" drawn in opaque black on a fully transparent canvas: the transparent pixels'
    # RGB values are invisible and must not matter (a plain grey conversion of a black
    # transparent canvas would make black ink on black and find nothing).
    mask = draw(ink=255, paper=0)  # stroke = 255
    rgba = Image.new("RGBA", mask.size, (*hidden_rgb, 0))
    rgba.paste(Image.new("RGBA", mask.size, (0, 0, 0, 255)), mask=mask)
    assert rgba.getpixel((0, 0)) == (*hidden_rgb, 0)
    np.testing.assert_allclose(result(rgba), result(draw()), atol=1e-6)


def test_light_ink_on_a_transparent_canvas() -> None:
    mask = draw(ink=255, paper=0)
    rgba = Image.new("RGBA", mask.size, (255, 255, 255, 0))  # hidden colour = ink colour
    rgba.paste(Image.new("RGBA", mask.size, (255, 255, 255, 255)), mask=mask)
    np.testing.assert_allclose(result(rgba), result(draw()), atol=1e-6)


def test_off_center_digit_is_centered_by_mass() -> None:
    centred = result(draw(size=(300, 300), origin=(75, 75), scale=150, width=10))
    corner = result(draw(size=(300, 300), origin=(5, 140), scale=150, width=10))
    cy, cx = ip.center_of_mass(corner)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    np.testing.assert_allclose(corner, centred, atol=1e-5)


def test_aspect_ratio_is_kept_for_a_tall_thin_bar() -> None:
    tall = Image.new("L", (200, 300), 255)
    ImageDraw.Draw(tall).rectangle((95, 40, 104, 239), fill=0)  # 10 x 200 pixels
    out = result(tall)
    height, width = bbox(out)
    assert height == 20
    assert 1 <= width <= 4  # 10/200 of 20 is 1 pixel; widened to MNIST's stroke width at most
    assert (out[:, 14] > 0.5).sum() >= 18  # the bar is in the middle column


def test_aspect_ratio_is_kept_for_a_wide_bar() -> None:
    wide = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(wide).rectangle((40, 95, 239, 104), fill=0)
    height, width = bbox(result(wide))
    assert width == 20 and 1 <= height <= 4


def test_size_of_the_input_does_not_matter() -> None:
    reference = result(draw(size=(200, 200), width=14))
    for side in (40, 80, 1600):  # same drawing, pen width in proportion
        out = result(draw(size=(side, side), width=round(side * 0.07)))
        assert shifted_difference(out, reference) < 0.03, side
    other_digit = result(draw([(0.5, 0.1), (0.5, 0.9)], size=(200, 200), width=14))
    assert shifted_difference(other_digit, reference) > 0.06  # what a real difference is


def test_thin_strokes_are_thickened_to_mnist_width() -> None:
    # A 4-pixel pen line in a 1500-pixel image is 0.05 pixels wide at 20x20 scale.
    image = draw(size=(1500, 1500), width=4)
    untouched = ip.Layout(field=28, box=20, stroke_range=None)
    faint = result(image, untouched)
    normal = ip.preprocess(image)
    assert normal.stroke_width < 1.2
    lo, hi = ip.MNIST_STROKE_RANGE
    assert ip.stroke_width(faint) < lo - 0.2
    assert lo - 0.3 <= ip.stroke_width(normal.image) <= hi + 0.3
    assert (normal.image > 0.5).sum() > 1.5 * (faint > 0.5).sum()


def test_thick_strokes_are_thinned_to_mnist_width() -> None:
    image = draw(size=(300, 300), width=60)  # a marker: 4 pixels at 20x20 scale
    normal = ip.preprocess(image)
    assert normal.stroke_width > ip.MNIST_STROKE_RANGE[1] + 0.5
    assert ip.stroke_width(normal.image) <= ip.MNIST_STROKE_RANGE[1] + 0.5
    assert bbox(normal.image)[0] == 20


def test_stroke_width_measures_a_bar() -> None:
    bar = np.zeros((100, 100), dtype=np.float32)
    bar[10:90, 40:46] = 1  # 80 x 6: 2A/P = 2*480 / (2*80 + 2*6) = 5.58
    # (the isotropic perimeter cuts each corner a little: within 1 %)
    assert ip.stroke_width(bar) == pytest.approx(2 * 480 / 172, rel=0.01)
    assert ip.stroke_width(bar * 0.5) == pytest.approx(ip.stroke_width(bar))


def test_center_of_mass() -> None:
    image = np.zeros((5, 7), dtype=np.float32)
    image[1, 2] = 1.0
    image[3, 6] = 3.0
    assert ip.center_of_mass(image) == pytest.approx((2.5, 5.0))


def test_place_in_field_clips_instead_of_cutting_ink() -> None:
    glyph = np.zeros((20, 10), dtype=np.float32)
    glyph[0] = 1.0  # all the mass in the top row: centring by mass would push it down 14 rows
    placed = ip.place_in_field(glyph, 28, "mass")
    assert placed.sum() == glyph.sum()
    assert placed[27].sum() == 0 and placed[8].sum() == 10  # moved down as far as it fits


# -------------------------------------------------------------------- modes and formats


def _png_modes(gray: Image.Image) -> dict[str, Image.Image]:
    mask = Image.eval(gray, lambda v: 255 - v)
    rgba = Image.new("RGBA", gray.size, (0, 0, 0, 0))
    rgba.paste(Image.new("RGBA", gray.size, (0, 0, 0, 255)), mask=mask)
    la = rgba.convert("LA")
    palette_transparent = rgba.convert("P")
    palette_transparent.info["transparency"] = palette_transparent.getpixel((0, 0))
    sixteen = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)
    return {
        "L": gray, "RGB": gray.convert("RGB"), "RGBA": rgba, "LA": la, "P": gray.convert("P"),
        "P+transparency": palette_transparent, "1": gray.point(lambda v: 255 * (v > 127), "1"),
        "I;16": sixteen,
    }


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "P+transparency", "1", "I;16"])
def test_every_image_mode_gives_the_same_digit(mode: str) -> None:
    gray = draw()
    image = _png_modes(gray)[mode]
    decoded = ip.decode_image(encode(image, "PNG"))
    expected = result(gray.point(lambda v: 255 * (v > 127))) if mode == "1" else result(gray)
    np.testing.assert_allclose(result(decoded), expected, atol=0.02)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_every_file_format_decodes(fmt: str) -> None:
    gray = draw(size=(240, 180))
    out = ip.preprocess_bytes(encode(gray.convert("RGB"), fmt)).image
    assert np.abs(out - result(gray)).mean() < 0.02


def test_animated_gif_gives_its_first_frame() -> None:
    first, second = draw().convert("P"), Image.new("L", (200, 200), 255).convert("P")
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[second], duration=100)
    out = ip.preprocess_bytes(buffer.getvalue()).image
    np.testing.assert_allclose(out, result(draw()), atol=0.02)


def test_exif_orientation_is_applied() -> None:
    upright = draw(size=(240, 240), width=16)
    stored = upright.rotate(90, expand=True).convert("RGB")  # as a phone stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    out = ip.preprocess_bytes(data).image
    assert np.abs(out - result(upright)).mean() < 0.02


def test_huge_images_are_shrunk_before_analysis() -> None:
    image = ip.decode_image(encode(draw(size=(3000, 2000), width=120)))
    gray, alpha = ip.gray_and_alpha(image)
    assert max(gray.shape) == ip.WORK_MAX_SIDE and alpha is None
    assert result(image).shape == (28, 28)


# ---------------------------------------------------------------------------- bad input


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny, valid PNG whose header then claims ``width x height`` pixels."""
    data = bytearray(encode(Image.new("L", (1, 1), 0)))
    ihdr = 8  # after the signature: length (4), type (4), then width and height
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    data[ihdr + 8 + 13 : ihdr + 8 + 17] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty file"),
    (b"this is not an image at all", "not a PNG, JPEG, BMP or GIF image"),
    (b"%PDF-1.4 not an image", "not a PNG, JPEG, BMP or GIF image"),
    (_png_with_size(100_000, 100_000), "decompression bomb"),
    (_png_with_size(40_000, 10), "decompression bomb"),
])
def test_bad_bytes_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ip.ImageInputError, match=message):
        ip.decode_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_truncated_files_are_refused(fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(300, 300), dtype=np.uint8)
    data = encode(Image.fromarray(noise).convert("RGB"), fmt)
    with pytest.raises(ip.ImageInputError, match=r"truncated|corrupt|damaged"):
        ip.preprocess_bytes(data[: len(data) // 2])


def test_other_formats_are_refused() -> None:
    with pytest.raises(ip.ImageInputError, match="not a PNG, JPEG, BMP or GIF"):
        ip.decode_image(encode(draw(), "TIFF"))


@pytest.mark.parametrize("image", [
    Image.new("L", (64, 64), 200),
    Image.new("RGB", (64, 64), (10, 200, 30)),
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
    Image.fromarray(np.random.default_rng(1).integers(120, 131, (64, 64), dtype=np.uint8)),
], ids=["grey", "green", "transparent", "faint-noise"])
def test_blank_images_are_refused(image: Image.Image) -> None:
    with pytest.raises(ip.ImageInputError, match="blank"):
        ip.preprocess_bytes(encode(image))


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(ip.ImageInputError, match=f"^{re.escape(str(missing))}: file not found$"):
        ip.preprocess_file(missing)
    with pytest.raises(ip.ImageInputError, match="is a folder"):
        ip.preprocess_file(tmp_path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ip.ImageInputError, match=f"^{re.escape(str(empty))}: empty file"):
        ip.preprocess_file(empty)
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as fh:  # sparse: takes no disk space
        fh.truncate(ip.MAX_FILE_BYTES + 1)
    with pytest.raises(ip.ImageInputError, match=r"over the limit of 52,428,800 bytes \(50 MiB\)"):
        ip.preprocess_file(huge)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(ip.ImageInputError, match=f"^{re.escape(str(fifo))}: not a regular file"):
        ip.preprocess_file(fifo)
    with pytest.raises(ip.ImageInputError, match="not a regular file"):
        ip.preprocess_file("/dev/zero")  # would be read until memory runs out


def test_a_file_that_grows_is_never_read_past_the_budget(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "growing.png"
    path.write_bytes(b"x" * 100)
    budget = ip.ImageBudget(max_bytes=1000)
    real_fstat = os.fstat

    class Small:  # the file said 100 bytes when asked, then grew to 5000 before the read
        def __init__(self, st: os.stat_result) -> None:
            self.st_size = 100
            self.st_mode = st.st_mode

    monkeypatch.setattr(os, "fstat", lambda fd: Small(real_fstat(fd)))
    path.write_bytes(b"x" * 5000)
    with pytest.raises(ip.ImageInputError, match="over the limit of 1,000 bytes"):
        ip.read_image_bytes(path, budget)


def test_the_pixel_budget_is_checked_before_decoding() -> None:
    big = encode(Image.new("L", (300, 300), 0))
    assert ip.decode_image(big).size == (300, 300)
    with pytest.raises(ip.ImageInputError, match="300x300 pixels, over the limit of 50,000"):
        ip.decode_image(big, ip.ImageBudget(max_pixels=50_000))


# ---------------------------------------------------------------------- other layouts


def test_digits_layout_makes_8x8_counts() -> None:
    out = result(draw(), ip.DIGITS_LAYOUT)
    assert out.shape == (8, 8)
    np.testing.assert_allclose(out * 16, np.round(out * 16), atol=1e-5)  # counts out of 16
    assert out.max() == 1.0
    rows = np.flatnonzero(out.any(axis=1))
    assert rows[0] == 0 and rows[-1] == 7  # like sklearn's digits, the digit fills the height


def test_layout_for_models() -> None:
    assert ip.layout_for((28, 28), "mnist") is ip.MNIST_LAYOUT
    assert ip.layout_for((28, 28), "fashion-mnist") is ip.FASHION_LAYOUT
    assert ip.layout_for((8, 8), "digits") is ip.DIGITS_LAYOUT
    other = ip.layout_for((14, 14), "custom")
    assert (other.field, other.box) == (14, 10)
    with pytest.raises(ValueError, match="square"):
        ip.layout_for((28, 14), "mnist")


# ------------------------------------------------------------------- real MNIST digits


def disguise(digit: np.ndarray, seed: int) -> Image.Image:
    """An MNIST digit as a photo might show it: enlarged, dark on light paper, off-centre,
    on a larger page, in colour."""
    rng = np.random.default_rng(seed)
    side = int(rng.integers(150, 400))
    big = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BICUBIC)
    page = Image.new("L", (side + 300, side + 200), 255)
    page.paste(big, (int(rng.integers(0, 300)), int(rng.integers(0, 200))))
    return page.convert("RGB")


@pytest.mark.mnist
def test_disguised_mnist_digits_come_back_as_they_were(mnist) -> None:
    digits = mnist.x_test[:100].reshape(-1, 28, 28)
    errors = []
    for i, digit in enumerate(digits):
        data = encode(disguise(digit, i), "JPEG", quality=90)
        out = ip.preprocess_bytes(data).image
        errors.append(np.abs(out - digit / 255).mean())
    # Same recipe, so nearly the same pixels (MNIST's mean pixel value is 0.13).
    assert np.median(errors) < 0.04
    assert np.mean(np.array(errors) < 0.08) >= 0.9


# ------------------------------------------------------------------ before/after picture


def _tile(image: np.ndarray, side: int = 112, invert: bool = False) -> Image.Image:
    pixels = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    if invert:
        pixels = 1 - pixels
    tile = Image.fromarray(np.round(pixels * 255).astype(np.uint8))
    tile.thumbnail((side, side), Image.Resampling.NEAREST if max(image.shape) <= 32
                   else Image.Resampling.BOX)
    if max(tile.size) < side:  # small images are shown scaled up, pixel by pixel
        factor = side // max(tile.size)
        tile = tile.resize((tile.width * factor, tile.height * factor), Image.Resampling.NEAREST)
    framed = Image.new("L", (side + 8, side + 8), 128)
    framed.paste(tile, (4 + (side - tile.width) // 2, 4 + (side - tile.height) // 2))
    return framed


def test_before_and_after_picture() -> None:
    """Save test-artifacts/imageprep-before-after.png: each row is one input (left) and its
    28x28 result (right), for the cases the preprocessing must handle."""
    transparent_mask = draw(size=(180, 240), width=10, ink=255, paper=0)
    transparent = Image.new("RGBA", transparent_mask.size, (0, 0, 0, 0))
    transparent.paste(Image.new("RGBA", transparent_mask.size, (20, 40, 160, 255)),
                      mask=transparent_mask)
    cases = {
        "dark on light": draw(),
        "light on dark": draw(ink=255, paper=0),
        "pencil on grey paper": draw(ink=90, paper=170),
        "transparent canvas": transparent,
        "off-centre, small": draw(size=(400, 300), origin=(10, 160), scale=120, width=8),
        "thin pen, big image": draw(size=(1200, 1200), width=4),
        "thick marker": draw(size=(300, 300), width=60),
        "tall bar": draw([(0.25, 0.1), (0.25, 0.9)], size=(150, 300), scale=300, width=12),
    }
    rows = []
    for name, image in cases.items():
        prep = ip.preprocess(image)
        out = prep.image
        assert out.shape == (28, 28) and bbox(out)[0] <= 20 and bbox(out)[1] <= 20
        cy, cx = ip.center_of_mass(out)
        assert abs(cy - 14) <= 1.5 and abs(cx - 14) <= 1.5, name
        before = image.convert("RGBA")
        shown = Image.alpha_composite(Image.new("RGBA", before.size, (200, 220, 200, 255)),
                                      before).convert("L")
        rows.append((_tile(np.asarray(shown) / 255), _tile(out)))
    label_width, top = 170, 24
    sheet = Image.new("L", (label_width + 2 * 120 + 10, top + len(rows) * 120), 255)
    pen = ImageDraw.Draw(sheet)
    pen.text((label_width, 6), "before", fill=0)
    pen.text((label_width + 130, 6), "after (28x28)", fill=0)
    for r, ((before_tile, after_tile), name) in enumerate(zip(rows, cases, strict=True)):
        pen.text((6, top + r * 120 + 54), name, fill=0)
        sheet.paste(before_tile, (label_width, top + r * 120))
        sheet.paste(after_tile, (label_width + 130, top + r * 120))
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "imageprep-before-after.png"
    with atomic_path(target) as tmp:
        sheet.save(tmp, format="PNG")
    assert Image.open(target).size == sheet.size
