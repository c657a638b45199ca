"""Decode workers and batch size that this machine can hold.

One DataLoader item of ``validate`` is a whole batch of uint8 crops (128 x 224 x 224 x 3 = 19 MB), handed from
the worker to the main process through ``/dev/shm``; each worker keeps ``prefetch_factor`` (2) items in
flight, and the pinning thread holds one more. Fifteen workers at batch 128 need ~600 MB of shared memory,
and containers often mount a 64 MB ``/dev/shm``: workers then die of SIGBUS. So the batch is halved (not
below 32) and then workers dropped until the items in flight fit in half the free shared memory (the rest
is headroom for timm's loader and the driver); when not even one worker fits, decoding runs in the main
process (``--workers 0``). Worker count itself starts from ``validate``'s default (the usable cores: affinity
capped by the cgroup CPU quota, ``senet_zoo.host``).
"""
from __future__ import annotations

PREFETCH = 2          # validate's make_loader and timm's create_loader both keep 2 items per worker
MIN_BATCH = 32


def items_in_flight(workers: int) -> int:
    return workers * PREFETCH + 1 if workers else 0


def plan(workers: int, batch: int, crop: int, shm_free: int | None, batch_fixed: bool = False) -> dict:
    """{"workers", "batch", "shm_need", "note"}: ``workers``/``batch`` as wanted, reduced until the shared
    memory they need fits in half of ``shm_free`` (None: unknown, nothing reduced). ``batch_fixed``: the
    batch was asked for explicitly (BS=...): only workers are reduced."""
    item = batch * crop * crop * 3
    if shm_free is None:
        return {"workers": workers, "batch": batch, "shm_need": items_in_flight(workers) * item,
                "note": "no /dev/shm to measure: workers and batch as asked"}
    room = shm_free // 2
    w, b = workers, batch

    def need(w_, b_):
        return items_in_flight(w_) * b_ * crop * crop * 3

    while need(w, b) > room and not batch_fixed and b // 2 >= MIN_BATCH:
        b //= 2
    while need(w, b) > room and w > 1:
        w -= 1
    if need(w, b) > room:
        w = 0
    changes = []
    if b != batch:
        changes.append(f"batch {batch} -> {b}")
    if w != workers:
        changes.append(f"workers {workers} -> {w}")
    note = (f"/dev/shm has {shm_free / 2**20:,.0f} MiB free: " + ", ".join(changes) + " so that "
            f"{items_in_flight(w)} batches in flight fit in half of it") if changes else "fits in /dev/shm"
    return {"workers": w, "batch": b, "shm_need": need(w, b), "note": note}
