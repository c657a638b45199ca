"""A filled decode cache as the loop's only input: every batch a slice of the whole set's crops, held in device
memory on CUDA (loaded once, and kept for every model of the same setting in ``validate --all``), read from the
memory-mapped cache itself on the CPU (its pages stay in memory).

A batch is then a slice: no DataLoader worker, no copy through shared memory, on CUDA no host-to-device copy;
after the first decode a sweep is bound by the models alone. The batches are the workers' batches: batch k is
rows [kB, (k+1)B) in name order, the last padded with zero rows of status ``STATUS_PAD``, so the numbers are
the same bit for bit.
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterator

import numpy as np
import torch

from .batches import STATUS_BAD, STATUS_OK, STATUS_PAD

# On CUDA the crops are loaded only when this much free device memory is left beside them for the model and
# its activations (SENet-154 at batch 128 in fp32 needs a few GiB).
DEVICE_RESERVE_BYTES = 8 << 30
CHUNK_ROWS = 1024  # rows copied to the device at a time (154 MB at 224 px)


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.1f} GiB"


class ResidentCrops:
    """(N, crop, crop, 3) uint8 crops and their (N,) int8 batch statuses; ``where`` they are (``cuda:0
    memory``, ``memory-mapped files``), as the record's ``data.decode_cache.resident`` says."""

    def __init__(self, images: torch.Tensor, status: torch.Tensor, where: str):
        self.images, self.status, self.where = images, status, where

    @classmethod
    def load(cls, images: np.ndarray, good: np.ndarray, device: torch.device,
             log: Callable[[str], None]) -> "ResidentCrops | None":
        """From a filled cache's ``images`` array (memory-mapped) and which rows are good images (the others
        are bad). On CUDA a copy in device memory, or None when it does not fit; on the CPU the mapping."""
        status = torch.from_numpy(np.where(good, STATUS_OK, STATUS_BAD).astype(np.int8))
        if device.type != "cuda":
            with warnings.catch_warnings():
                # a read-only mapping: torch warns that writing would fail; the loop only reads (it converts
                # each batch to float before normalising)
                warnings.simplefilter("ignore", UserWarning)
                return cls(torch.from_numpy(images), status, "memory-mapped files")
        need = images.nbytes + status.nbytes
        free, _total = torch.cuda.mem_get_info(device)
        if need > free - DEVICE_RESERVE_BYTES:
            log(f"decode cache: its {_gib(need)} of crops do not fit beside the model in {device} ({_gib(free)} "
                f"free, {_gib(DEVICE_RESERVE_BYTES)} kept for the model); batches are copied from its files")
            return None
        on_device = torch.empty(images.shape, dtype=torch.uint8, device=device)
        for i in range(0, len(images), CHUNK_ROWS):
            # np.array: a writable host copy of the read-only mapping's rows, copied on to the device
            on_device[i:i + CHUNK_ROWS].copy_(torch.from_numpy(np.array(images[i:i + CHUNK_ROWS])))
        log(f"decode cache: {_gib(need)} of crops loaded into {device} memory")
        return cls(on_device, status.to(device), f"{device} memory")

    def batches(self, mine: list[int], batch_size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(k, images, status) of batch k for each k in ``mine``, as ``batches.BatchDataset`` gives them."""
        n = self.images.shape[0]
        for k in mine:
            start, stop = k * batch_size, min((k + 1) * batch_size, n)
            images, status = self.images[start:stop], self.status[start:stop]
            if stop - start < batch_size:
                padded = torch.zeros((batch_size, *images.shape[1:]), dtype=torch.uint8, device=images.device)
                padded[:stop - start] = images
                padded_status = torch.full((batch_size,), STATUS_PAD, dtype=torch.int8, device=status.device)
                padded_status[:stop - start] = status
                images, status = padded, padded_status
            yield k, images, status


class ResidentStore:
    """The resident crops of one cache folder at a time, kept across the runs of one ``validate`` command: the
    sweep's models of one setting read the set loaded once; another folder's crops replace them."""

    def __init__(self):
        self.key: tuple | None = None
        self.crops: ResidentCrops | None = None

    def get(self, key: tuple, load: Callable[[], ResidentCrops | None]) -> ResidentCrops | None:
        if key != self.key:
            self.key, self.crops = None, None  # the previous setting's crops go before the next are loaded
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.crops, self.key = load(), key
        return self.crops
