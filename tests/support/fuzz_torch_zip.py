"""The fuzzer's ``torch_zip`` format: a ``torch.save`` checkpoint as ``senet-zoo compare --timm-weights`` and
``validate --timm-weights`` read it (``timm_weights/torch_zip.py``, no unpickling), and its mutations.

The seed is a small state dict saved by torch itself, its archive rewritten with fixed timestamps and without
torch's random ``.data/serialization_id``, so the bytes repeat. Mutations work at three levels, each leaving a
well-formed archive (valid CRCs) where the level is above the bytes, so that the reader's own checks are what
is exercised, not zipfile's CRC:

* bytes of the whole file (flips, truncation, insertion, chunks copied and deleted);
* the pickle ``data.pkl``: an opcode replaced by any other, an integer argument (offset, size, stride,
  storage length) set to an interesting value, a GLOBAL renamed to a callable that must never run, an opcode
  span duplicated or deleted, random opcodes inserted, bytes of the pickle flipped;
* the archive: a storage entry truncated, extended or dropped, an entry duplicated or compressed, a second
  ``data.pkl``.
"""
from __future__ import annotations

import io
import pickletools
import random
import zipfile

DATE = (1980, 1, 1, 0, 0, 0)
# callables that must never be called (any would be refused, these would do harm if run)
DANGEROUS = (b"os\nsystem", b"builtins\neval", b"builtins\nexec", b"subprocess\ncall", b"torch\nload",
             b"torch._utils\n_rebuild_parameter", b"collections\ndefaultdict", b"numpy\nfromfile")
INTERESTING = (0, 1, 2, 3, 4, 6, 8, 9, 63, 64, 255, 256, 65535, 1 << 16, (1 << 31) - 1, -1, -2, 1 << 30)


def seed_bytes() -> bytes:
    import collections

    import torch

    g = torch.Generator().manual_seed(0)
    state = collections.OrderedDict()
    state["conv.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    for key, value in torch.nn.BatchNorm2d(4).state_dict().items():
        state[f"bn.{key}"] = value
    state["fc.weight"] = torch.randn(3, 4, generator=g).t()      # a transposed view
    state["fc.bias"] = torch.arange(6, dtype=torch.float16)[1:6:2]  # an offset, strided view
    buf = io.BytesIO()
    torch.save(state, buf)
    return rezip(buf.getvalue(), drop=(".data/serialization_id",))


def entries(data: bytes) -> list[tuple[str, bytes, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i), i.compress_type) for i in z.infolist()]


def build(items: list[tuple[str, bytes, int]]) -> bytes:
    import warnings

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # a duplicated entry is the mutation, not a mistake
        for name, raw, kind in items:
            z.writestr(zipfile.ZipInfo(name, DATE), raw, compress_type=kind)
    return buf.getvalue()


def rezip(data: bytes, drop=()) -> bytes:
    return build([e for e in entries(data) if not any(e[0].endswith(d) for d in drop)])


def _ops(pkl: bytes) -> list[tuple[int, int, str]]:
    """(start, end, opcode name) of each opcode of a well-formed pickle."""
    out = []
    ops = list(pickletools.genops(pkl))
    for (op, _, pos), nxt in zip(ops, ops[1:] + [(None, None, len(pkl))]):
        out.append((pos, nxt[2], op.name))
    return out


def _mutate_pickle(rng: random.Random, pkl: bytes) -> tuple[bytes, str]:
    ops = _ops(pkl)
    choice = rng.randrange(7)
    if choice == 0:
        a, b, name = rng.choice(ops)
        code = rng.randrange(256)
        return pkl[:a] + bytes([code]) + pkl[a + 1:], f"opcode {name} at {a} -> byte {code:#04x}"
    if choice == 1:
        ints = [(a, b, n) for a, b, n in ops if n in ("BININT1", "BININT2", "BININT")] or ops
        a, b, name = rng.choice(ints)
        value = rng.choice(INTERESTING)
        new = b"J" + int(value).to_bytes(4, "little", signed=True)
        return pkl[:a] + new + pkl[b:], f"{name} at {a} -> BININT {value}"
    if choice == 2:
        globs = [(a, b, n) for a, b, n in ops if n == "GLOBAL"]
        a, b, _ = rng.choice(globs)
        target = rng.choice(DANGEROUS)
        return pkl[:a] + b"c" + target + b"\n" + pkl[b:], f"GLOBAL at {a} -> {target.decode().replace(chr(10), '.')}"
    if choice == 3:
        a, _, _ = rng.choice(ops)
        b = min(len(pkl), a + rng.randint(1, 24))
        times = rng.choice((1, 2, 50))
        return pkl[:a] + pkl[a:b] * (times + 1) + pkl[b:], f"pickle bytes {a}:{b} repeated {times}x"
    if choice == 4:
        a, b, name = rng.choice(ops[:-1])
        return pkl[:a] + pkl[b:], f"opcode {name} at {a} deleted"
    if choice == 5:
        a, _, _ = rng.choice(ops)
        blob = bytes(rng.choice(b"()tRQ.}]qhXJKM\x85\x86\x87\x88\x89N") for _ in range(rng.randint(1, 8)))
        return pkl[:a] + blob + pkl[a:], f"opcodes {blob!r} inserted at {a}"
    out = bytearray(pkl)
    spots = [(rng.randrange(len(out)), rng.randrange(256)) for _ in range(rng.randint(1, 3))]
    for p, v in spots:
        out[p] = v
    return bytes(out), f"pickle bytes set {spots}"


def _mutate_archive(rng: random.Random, items: list) -> tuple[list, str]:
    storages = [i for i, (n, _, _) in enumerate(items) if "/data/" in n]
    choice = rng.randrange(6)
    if choice == 0:
        i = rng.choice(storages)
        name, raw, kind = items[i]
        cut = rng.randrange(len(raw))
        items[i] = (name, raw[:cut], kind)
        return items, f"{name} truncated to {cut} bytes"
    if choice == 1:
        i = rng.choice(storages)
        name, raw, kind = items[i]
        items[i] = (name, raw + bytes(rng.randint(1, 64)), kind)
        return items, f"{name} extended"
    if choice == 2:
        i = rng.choice(storages)
        name = items.pop(i)[0]
        return items, f"{name} dropped"
    if choice == 3:
        i = rng.randrange(len(items))
        items.append(items[i])
        return items, f"{items[i][0]} duplicated"
    if choice == 4:
        i = rng.randrange(len(items))
        name, raw, _ = items[i]
        items[i] = (name, raw, zipfile.ZIP_DEFLATED)
        return items, f"{name} compressed"
    pkl = next(e for e in items if e[0].endswith("/data.pkl"))
    items.append(("other/data.pkl", pkl[1], zipfile.ZIP_STORED))
    return items, "a second data.pkl"


def mutate_torch_zip(rng: random.Random, data: bytes, byte_mutations) -> tuple[bytes, str]:
    level = rng.randrange(10)
    if level < 2:
        return rng.choice(byte_mutations)(rng, data)
    items = entries(data)
    if level < 8:
        i = next(k for k, e in enumerate(items) if e[0].endswith("/data.pkl"))
        name, pkl, kind = items[i]
        new, what = _mutate_pickle(rng, pkl)
        items[i] = (name, new, kind)
        return build(items), what
    items, what = _mutate_archive(rng, items)
    return build(items), what
