"""How fast is ``digitnet.augment``? Images per second for one epoch of MNIST's training set.

Run from the repository root::

    python -m benchmarks.augment --data-dir ../shared/data/mnist [--threads 1]

1. :meth:`Augmenter.epoch` on the 60,000 training images (uint8 rows in, uint8 rows out):
   affine only, elastic only, both (the defaults); best of ``--repeat`` epochs;
2. where a block's time goes: drawing the distortions (random numbers, smoothing) and
   warping (coordinates, bilinear gather, rounding);
3. the alternatives measured for the two hot spots, on the same inputs: the NumPy bilinear
   gather against ``scipy.ndimage.map_coordinates(order=1)``, once on the stacked batch
   (3-D coordinates) and once per image; the separable smoothing against
   ``scipy.ndimage.gaussian_filter`` on the stacked fields.

``--threads N`` limits BLAS (only the smoothing uses it). The load average is printed
before and after: on a shared machine, compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

from digitnet import augment
from digitnet.augment import BLOCK, Augmenter

SETTINGS = {
    "affine only": Augmenter(elastic_alpha=0),
    "elastic only": Augmenter(0, 0, 0, 0),
    "affine + elastic (defaults)": Augmenter(),
}
AFFINE_ONLY = SETTINGS["affine only"]


def best_seconds(run: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` runs (after one warm-up run)."""
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def load_images(data_dir: str | None, n: int) -> np.ndarray:
    """``n`` MNIST training rows (uint8), or synthetic ones without ``data_dir``."""
    if data_dir:
        from digitnet.data import load_dataset

        x = load_dataset("mnist", data_dir, download_ok=False, progress=False).x_train
        return np.resize(x, (n, x.shape[1])) if n > len(x) else x[:n]
    rng = np.random.default_rng(0)
    x = np.zeros((n, 28, 28), dtype=np.uint8)
    x[:, 6:22, 9:19] = rng.integers(0, 256, (n, 16, 10), dtype=np.uint8)
    return x.reshape(n, -1)


def epoch_rates(x: np.ndarray, repeat: int) -> dict[str, float]:
    """Images per second of :meth:`Augmenter.epoch` for each of :data:`SETTINGS`."""
    rates = {}
    for name, aug in SETTINGS.items():
        epochs = iter(range(repeat + 1))  # a fresh epoch each run, as in training

        def run(aug: Augmenter = aug, epochs: Any = epochs) -> None:
            aug.epoch(x, seed=0, epoch=next(epochs))

        rates[name] = len(x) / best_seconds(run, repeat)
    return rates


def stage_times(x: np.ndarray, repeat: int) -> dict[str, float]:
    """Microseconds per block of :data:`BLOCK` images for the stages of the defaults."""
    aug = Augmenter()
    batch = augment.as_batch(x[:BLOCK])
    shape = batch.shape[1:]
    distortion = aug.draw(augment.block_rng(0, 0, 0), BLOCK, shape)
    affine = augment.Distortion(distortion.matrix, distortion.shift, None)
    stages: dict[str, Callable[[], Any]] = {
        "draw: affine parameters": lambda: AFFINE_ONLY.draw(augment.block_rng(0, 0, 0), BLOCK,
                                                            shape),
        "draw: with elastic fields": lambda: aug.draw(augment.block_rng(0, 0, 0), BLOCK,
                                                      shape),
        "warp: affine": lambda: augment._warp(batch, affine),
        "warp: with elastic fields": lambda: augment._warp(batch, distortion),
    }
    return {name: best_seconds(run, repeat * 10) * 1e6 for name, run in stages.items()}


def sampler_rates(x: np.ndarray, repeat: int) -> dict[str, float]:
    """Images per second of the bilinear samplers and the smoothers, on BLOCK-sized chunks
    of ``x`` (the NumPy paths) or all of ``x`` at once (SciPy's stacked calls)."""
    batch = augment.as_batch(x)
    n, h, w = batch.shape
    rng = np.random.default_rng(1)
    rows = (np.arange(h, dtype=np.float32)[None, :, None] + rng.uniform(-2, 2, (n, 1, 1))
            ).astype(np.float32) + np.zeros((1, 1, w), np.float32)
    cols = (np.arange(w, dtype=np.float32)[None, None, :] + rng.uniform(-2, 2, (n, 1, 1))
            ).astype(np.float32) + np.zeros((1, h, 1), np.float32)

    def numpy_gather() -> None:
        for lo in range(0, n, BLOCK):
            augment.bilinear(batch[lo:lo + BLOCK], rows[lo:lo + BLOCK], cols[lo:lo + BLOCK])

    def scipy_stacked() -> None:
        index = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], rows.shape)
        ndimage.map_coordinates(batch.astype(np.float32), np.stack([index, rows, cols]),
                                order=1, mode="grid-constant", output=np.float32)

    def scipy_per_image() -> None:
        images = batch.astype(np.float32)
        out = np.empty_like(images)
        for i in range(n):
            ndimage.map_coordinates(images[i], np.stack([rows[i], cols[i]]), order=1,
                                    mode="grid-constant", output=out[i])

    fields = rng.uniform(-1, 1, (n, 2, h, w)).astype(np.float32)

    def numpy_smooth() -> None:
        for lo in range(0, n, BLOCK):
            augment.smooth(fields[lo:lo + BLOCK], 4.0)

    def scipy_smooth() -> None:
        ndimage.gaussian_filter(fields, (0, 0, 4.0, 4.0), mode="constant")

    runs = {"bilinear: NumPy gather (digitnet)": numpy_gather,
            "bilinear: map_coordinates, stacked batch": scipy_stacked,
            "bilinear: map_coordinates, per image": scipy_per_image,
            "smoothing: two matrix products (digitnet)": numpy_smooth,
            "smoothing: gaussian_filter, stacked fields": scipy_smooth}
    return {name: n / best_seconds(run, repeat) for name, run in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITNET_DATA_DIR"),
                        help="MNIST folder (default: $DIGITNET_DATA_DIR; synthetic without)")
    parser.add_argument("--n", type=int, default=60_000, help="images per epoch")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads")
    parser.add_argument("--sampler-images", type=int, default=8192,
                        help="images for part 3 (the per-image loop is slow)")
    args = parser.parse_args(argv)
    x = load_images(args.data_dir, args.n)
    print(f"{len(x)} images {'of MNIST' if args.data_dir else '(synthetic)'}, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    with threadpool_limits(args.threads):
        print("1. one epoch, images/s (s per epoch):")
        for name, rate in epoch_rates(x, args.repeat).items():
            print(f"   {name:<42} {rate:>9,.0f}  ({len(x) / rate:.2f} s)")
        print(f"2. per block of {BLOCK} images, µs:")
        for name, us in stage_times(x, args.repeat).items():
            print(f"   {name:<42} {us:>9,.0f}")
        print(f"3. alternatives, images/s on {min(args.sampler_images, len(x))} images:")
        for name, rate in sampler_rates(x[:args.sampler_images], args.repeat).items():
            print(f"   {name:<42} {rate:>9,.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
