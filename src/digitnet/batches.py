"""Shuffled mini-batches: uint8 images gathered and scaled into one reused float buffer.

Images stay uint8 in memory (a quarter of float32's size). Each batch is gathered into a
preallocated uint8 buffer and scaled into a preallocated float buffer, so an epoch
allocates almost nothing. When that buffer lives on a GPU, the images and labels are copied
there once and every batch is gathered and scaled there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from digitnet.data.preprocessing import MinMaxScaler
from digitnet.devices import get_array_module, take_rows, to_device


class BatchLoader:
    """Mini-batches of ``x`` ``(N, d)`` and labels ``y`` ``(N,)`` in a fresh order every epoch.

    Every batch is written into ``out`` ``(batch_size, d)``, whose length sets the batch
    size; the batch handed out is a view of it, valid until the next one. The images and
    labels are kept on ``out``'s device (copied there once if they are not; the order of
    the samples is drawn by ``rng`` on the CPU either way).
    """

    def __init__(
        self,
        x: NDArray[np.uint8],
        y: NDArray[np.integer],
        scaler: MinMaxScaler,
        out: NDArray[np.floating],
        rng: np.random.Generator,
    ) -> None:
        self.xp = xp = get_array_module(out)
        self.x = to_device(x, xp)
        self.y = to_device(np.asarray(y, dtype=np.intp), xp)
        self.scaler, self.out, self.rng = scaler, out, rng
        self.batch_size = len(out)
        self._raw = xp.empty((self.batch_size, x.shape[1]), dtype=x.dtype)
        # True once x is this loader's own copy (replace_images, or a copy on the GPU)
        self.owns_images = self.x is not x

    def replace_images(self, x: NDArray[np.uint8]) -> None:
        """Train on ``x`` (the same shape; e.g. this epoch's augmented images) from the next
        epoch on. The images are copied into the loader's own array, never into the caller's
        (a trainer that shares that array with another process sets :attr:`owns_images`)."""
        if x.shape != self.x.shape:
            raise ValueError(f"expected images of shape {self.x.shape}, got {x.shape}")
        if not self.owns_images:
            self.x, self.owns_images = self.xp.empty_like(self.x), True
        self.x[...] = to_device(x, self.xp)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def epoch(self) -> Iterator[tuple[NDArray[np.floating], NDArray[np.intp]]]:
        """``(x_batch, y_batch)`` pairs covering every sample once, in a seeded random order."""
        order = to_device(self.rng.permutation(len(self.x)), self.xp)
        yield from self.serve([order[start : start + self.batch_size]
                               for start in range(0, len(order), self.batch_size)])

    def serve(self, batches: Sequence[NDArray[np.intp]]
              ) -> Iterator[tuple[NDArray[np.floating], NDArray[np.intp]]]:
        """``(x_batch, y_batch)`` for each index array of ``batches`` (at most
        :attr:`batch_size` samples each), in this order: what :meth:`epoch` yields for its
        order (the live lab serves the rest of an epoch with it after a batch-size change)."""
        for idx in batches:
            yield self.load(idx), self.y[idx]

    def load(self, idx: NDArray[np.intp]) -> NDArray[np.floating]:
        """Scale the samples ``idx`` into ``out[:len(idx)]`` and return that view."""
        self.load_part(idx, slice(0, len(idx)))
        return self.out[: len(idx)]

    def load_part(self, idx: NDArray[np.intp], part: slice) -> None:
        """Only the batch rows ``part``: ``out[part] = scale(x[idx[part]])`` (another process
        may load the other rows)."""
        self.gather(idx[part], self._raw[part])
        self.scale(self._raw, part)

    def gather(self, idx: NDArray[np.intp], raw: NDArray[np.uint8]) -> None:
        """``raw[:] = x[idx]``: the uint8 rows of the samples ``idx``."""
        take_rows(self.x, idx, raw)

    def scale(self, raw: NDArray[np.uint8], part: slice) -> None:
        """``out[part] = scale(raw[part])``."""
        self.scaler.transform(raw[part], out=self.out[part])
