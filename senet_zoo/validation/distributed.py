"""``torchrun`` support: who am I, and exchanging the small per-step results.

The evaluation never pads or duplicates images (no ``DistributedSampler``): the global list is cut into
fixed batches of ``batch_size`` images in name order, and rank r evaluates batches r, r+W, r+2W, ... Each
batch therefore holds the same images whatever the world size, so a single process and W processes compute
identical batches (and identical numbers), and a resumed run may use a different world size. After each
step (W batches) every rank all-gathers the step's per-image top-5 predictions, so rank 0 holds them all.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import time
from dataclasses import dataclass

import torch

from ..errors import SenetZooError
from ..files import atomic_write_text

# Set by torchrun's agent for each worker: a worker that fails may leave its reason there (JSON, "message").
ERROR_FILE_ENV = "TORCHELASTIC_ERROR_FILE"


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def setup(device: str) -> Dist:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        kwargs = {}
        if backend == "nccl":
            kwargs["device_id"] = torch.device("cuda", local_rank)
        try:
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60), **kwargs)
        except TypeError:  # older torch without device_id
            kwargs.pop("device_id", None)
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
        except (RuntimeError, ValueError) as e:
            raise SenetZooError(None, f"cannot join the torchrun process group ({str(e).splitlines()[0]})") from None
    return Dist(rank, world, local_rank, backend)


def all_gather(t: torch.Tensor, d: Dist) -> list[torch.Tensor]:
    """Every rank's ``t`` (same shape and dtype on all ranks), in rank order."""
    if not d.enabled:
        return [t]
    import torch.distributed as dist

    out = [torch.empty_like(t) for _ in range(d.world_size)]
    dist.all_gather(out, t)
    return out


def broadcast_object(obj, d: Dist):
    """Rank 0's ``obj`` on every rank."""
    if not d.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def teardown(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def exit_status(rc: int, d: Dist, verdict_line: str | None) -> int:
    """The exit code of this process once the run is done (every rank calls it). Alone: ``rc``. Under
    torchrun only rank 0 carries the verdict (the others exit 0: their predictions are rank 0's, and a
    second failed rank would only lengthen the launcher's report).

    torchrun reports any worker's non-zero exit as ``ChildFailedError``: its own traceback, printed after
    our table, whose "Root Cause" entry shows the message the worker left in ``$TORCHELASTIC_ERROR_FILE``
    (else a link to torch's docs). Rank 0 writes ``verdict_line`` there, so the launcher's report ends with
    the verdict and says that exit 1 is the verdict, not a crash. And it exits only once the other ranks of
    its node have: the launcher stops (SIGTERM) whatever still runs when one worker fails, and would list
    those as failures too."""
    if not d.enabled:
        return rc
    peers = _all_gather_object((socket.gethostname(), os.getpid()))
    if not d.is_main:
        return 0
    path = os.environ.get(ERROR_FILE_ENV)
    if rc and verdict_line and path:
        try:
            atomic_write_text(path, json.dumps({"message": verdict_line, "timestamp": int(time.time())}))
        except OSError:
            pass  # the report then shows torch's generic line; the table above still says it all
    if rc:
        here = socket.gethostname()
        _wait_until_gone([pid for host, pid in peers if host == here and pid != os.getpid()])
    return rc


def _all_gather_object(obj) -> list:
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _wait_until_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Until these processes have exited (a zombie counts: only its parent, the launcher, can reap it), at
    most ``timeout`` seconds. Reads /proc; elsewhere returns at once."""
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _running(pid)]
        if pids:
            time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]
