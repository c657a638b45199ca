"""What the evaluation loop consumes: whole uint8 batches, decoded in DataLoader workers, fed to the device.

One DataLoader item is a whole batch (``BatchDataset``), so there is no per-image collate; batch k is images
[kB, (k+1)B) in name order, the last one padded to full size (``STATUS_PAD``) so every forward pass has the
same shape. On CUDA the host-to-device copy of the next batch overlaps the current one's compute
(``DeviceFeed``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..images.preprocess import BadImage, Preprocessing
from .sources.folder import PathListReader

STATUS_PAD, STATUS_BAD, STATUS_OK = -1, 0, 1


class BatchDataset(torch.utils.data.Dataset):
    """Item k = batch k: (k, uint8 images (batch_size, crop, crop, 3) RGB, int8 status (batch_size,)).

    The last batch is padded to full size with zero images of status ``STATUS_PAD`` (dropped after the model):
    every forward pass has the same shape, so the kernels (cuDNN's choice, a compiled graph) and therefore the
    numbers of an image do not depend on where the set ends. ``reader`` is one of ``sources``' readers
    (``read(i) -> bytes``; a list of paths is read as files); with ``cache`` (``cache.DecodeCache``) stored
    crops are copied instead of decoded, and decoded ones are stored."""

    def __init__(self, reader, prep: Preprocessing, batch_size: int, cache=None, pad: bool = True):
        if isinstance(reader, (list, tuple)):
            reader = PathListReader(reader)
        self.reader, self.prep, self.batch_size, self.cache, self.pad = reader, prep, batch_size, cache, pad

    def __len__(self) -> int:
        return math.ceil(len(self.reader) / self.batch_size)

    def __getitem__(self, k: int):
        start = k * self.batch_size
        n = min(self.batch_size, len(self.reader) - start)
        rows = self.batch_size if self.pad else n
        crop = self.prep.crop
        images = np.zeros((rows, crop, crop, 3), dtype=np.uint8)
        status = np.full(rows, STATUS_PAD, dtype=np.int8)
        if self.cache is not None:
            self.cache.fill(start, images, status[:n], self.reader, self.prep, STATUS_OK, STATUS_BAD)
        else:
            status[:n] = STATUS_OK
            for row in range(n):
                try:
                    self.prep.decode_rgb(self.reader.read(start + row), images[row])
                except BadImage:
                    status[row] = STATUS_BAD
        return k, torch.from_numpy(images), torch.from_numpy(status)


def make_loader(ds: BatchDataset, batches: list[int], workers: int, pin_memory: bool):
    """One item per batch (``batch_size=None``). Iterate it through ``start(loader)``. Two batches in flight
    per worker (``prefetch_factor`` 2) keep the queue full without holding more pinned memory than needed."""
    kwargs = dict(persistent_workers=True, prefetch_factor=2) if workers > 0 else {}
    return torch.utils.data.DataLoader(ds, batch_size=None, sampler=batches, num_workers=workers,
                                       pin_memory=pin_memory, **kwargs)


def start(loader):
    """``iter(loader)``; for a DataLoader with workers, with OpenCV single-threaded while the workers fork:
    each worker decodes on one core (torch already sets one thread per worker). Calling
    ``cv2.setNumThreads`` *inside* a forked worker deadlocks when the parent had used OpenCV's thread pool
    (it destroys a condition variable that the parent's pool threads, absent in the child, wait on), so the
    setting is inherited instead."""
    if not isinstance(loader, torch.utils.data.DataLoader) or loader.num_workers == 0:
        return iter(loader)
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return iter(loader)
    finally:
        cv2.setNumThreads(previous)


class DeviceFeed:
    """Batches from the loader, already on the device. On CUDA the host-to-device copy of batch s+1 is issued
    on a side stream (``prefetch``, called once batch s is queued), so it overlaps batch s's compute; the
    compute stream waits for it only when it takes the batch. Elsewhere a plain pass-through."""

    def __init__(self, it, device: torch.device):
        self.it, self.device = it, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.ready = None

    def prefetch(self) -> None:
        if self.ready is not None:
            return
        try:
            k, images, st = next(self.it)
        except StopIteration:
            return
        if self.stream is not None:
            with torch.cuda.stream(self.stream):
                images = images.to(self.device, non_blocking=True)
                st = st.to(self.device, non_blocking=True)
        self.ready = (k, images, st)

    def take(self):
        self.prefetch()
        if self.ready is None:
            raise StopIteration
        k, images, st = self.ready
        self.ready = None
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            images.record_stream(current)  # allocated on the side stream, used (and freed) on this one
            st.record_stream(current)
        return k, images, st
