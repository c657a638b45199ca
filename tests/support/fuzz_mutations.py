"""Mutations of the fuzzer's seed files (``fuzz_seeds.py``): byte-level (flips, truncation, insertion,
duplicated and deleted chunks), protobuf-aware (declared lengths, field tags, varint values, blob shapes,
whole fields duplicated or deleted, bulk), HDF5 through h5py on a copy (shapes, dtypes, storage, names,
attributes, links, nesting), label-file text (odd digits, BOM, line breaks, nesting, huge numbers),
torch.save checkpoints (``fuzz_torch_zip.py``: pickle opcodes and arguments, archive entries), and the
archives of ``--data`` (``fuzz_archives.py``: tar headers, links, sparse and pax; WebDataset members; parquet
schemas and row groups).

``case_input(fmt, seed, index, ...)`` is the one entry: a generator seeded with all three picks the mutation,
so a case is rebuilt from those numbers alone."""
from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import numpy as np

from .fuzz_archives import ARCHIVE_FORMATS, mutate_archive
from .fuzz_seeds import TXT_LABEL_KINDS, _field, _varint

CAFFE_FORMATS = ("v2_packed", "v2_unpacked", "v1", "hdf5")
LABEL_FORMATS = ("labels_txt", "labels_json")
CHECKPOINT_FORMATS = ("torch_zip",)      # timm's checkpoints (fuzz_torch_zip.py)
FORMATS = CAFFE_FORMATS + LABEL_FORMATS + CHECKPOINT_FORMATS + ARCHIVE_FORMATS

# ----------------------------------------------------------------------------------------------------------
# Protobuf wire positions (for structure-aware mutations)


@dataclasses.dataclass(frozen=True)
class Wire:
    number: int
    wt: int
    tag_start: int
    head_end: int       # end of the tag (start of the length varint for LEN, of the value otherwise)
    value_start: int
    end: int
    path: tuple[int, ...]          # field numbers from the top level down to this one
    ancestors: tuple["Wire", ...]  # enclosing LEN fields, outermost first


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def wire_fields(buf: bytes, start: int = 0, end: int | None = None, path=(), ancestors=(), depth=0) -> list[Wire]:
    """Every field of the message in ``buf[start:end]``, and of each LEN field that parses as a message."""
    end = len(buf) if end is None else end
    out: list[Wire] = []
    pos = start
    while pos < end:
        tag_start = pos
        key, pos = _read_varint(buf, pos, end)
        number, wt = key >> 3, key & 7
        if number == 0:
            raise ValueError("field 0")
        head_end = pos
        if wt == 0:
            _, pos = _read_varint(buf, pos, end)
            value_start = head_end
        elif wt == 2:
            length, value_start = _read_varint(buf, pos, end)
            pos = value_start + length
        elif wt in (1, 5):
            value_start, pos = pos, pos + (8 if wt == 1 else 4)
        else:
            raise ValueError("group")
        if pos > end:
            raise ValueError("past the end")
        field = Wire(number, wt, tag_start, head_end, value_start, pos, path + (number,), ancestors)
        out.append(field)
        if wt == 2 and depth < 8 and pos > value_start:
            try:
                out.extend(wire_fields(buf, value_start, pos, field.path, ancestors + (field,), depth + 1))
            except ValueError:
                pass  # a string or packed values, not a message
    return out


def _inside(field: Wire) -> Wire:
    """``field`` as the parent of a splice within its own value (its length is fixed too)."""
    return dataclasses.replace(field, ancestors=field.ancestors + (field,))


def _splice(buf: bytes, field: Wire, start: int, end: int, new: bytes) -> bytes:
    """Replace ``buf[start:end]`` (inside ``field``) and fix the lengths of every enclosing field."""
    delta = len(new) - (end - start)
    out = buf[:start] + new + buf[end:]
    for outer in reversed(field.ancestors):  # innermost first: its length varint lies after the outer ones'
        old_len, _ = _read_varint(buf, outer.head_end, outer.value_start)
        encoded = _varint(old_len + delta)
        out = out[:outer.head_end] + encoded + out[outer.value_start:]
        delta += len(encoded) - (outer.value_start - outer.head_end)
    return out


# ----------------------------------------------------------------------------------------------------------
# Mutations: each takes (rng, seed bytes[, path]) and returns (bytes, description)

INTERESTING_INTS = (0, 1, 2, 3, 4, 7, 127, 128, 255, 256, 1000, 1 << 16, (1 << 31) - 1, 1 << 31, 1 << 32,
                    (1 << 32) + 4, 1 << 40, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 64) - 4)


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data)) if data else 0


def m_byte_flip(rng, data):
    out = bytearray(data)
    spots = [(_pos(rng, data), rng.randrange(256)) for _ in range(rng.randint(1, 4))]
    for p, v in spots:
        if out:
            out[p] = v
    return bytes(out), f"bytes set {spots}"


def m_bit_flip(rng, data):
    out = bytearray(data)
    bits = [(_pos(rng, data), rng.randrange(8)) for _ in range(rng.randint(1, 4))]
    for p, b in bits:
        if out:
            out[p] ^= 1 << b
    return bytes(out), f"bits flipped {bits}"


def m_truncate(rng, data):
    cut = rng.randrange(len(data))
    return data[:cut], f"truncated to {cut} of {len(data)} bytes"


def m_insert(rng, data):
    p = rng.randrange(len(data) + 1)
    choice = rng.randrange(4)
    if choice == 0:
        blob = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif choice == 1:
        blob = b"\xff" * rng.randint(1, 12)
    elif choice == 2:
        blob = b"\x2d\x00\x00\x80\x3f" * rng.randint(1, 64)  # non-packed float records
    else:
        blob = b"\x00" * rng.randint(1, 16)
    return data[:p] + blob + data[p:], f"inserted {blob[:16].hex()}{'...' if len(blob) > 16 else ''} " \
                                       f"({len(blob)} bytes) at {p}"


def m_duplicate_chunk(rng, data):
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, max(1, len(data) // 4)))
    at = rng.randrange(len(data) + 1)
    times = rng.choice((1, 1, 2, 8, 100))
    return data[:at] + data[a:b] * times + data[at:], f"bytes {a}:{b} copied {times}x to {at}"


def m_delete_chunk(rng, data):
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 32))
    return data[:a] + data[b:], f"bytes {a}:{b} deleted"


BYTE_MUTATIONS = (m_byte_flip, m_bit_flip, m_truncate, m_insert, m_duplicate_chunk, m_delete_chunk)


def _fields_of(data: bytes) -> list[Wire]:
    """The fields up to the first place an earlier mutation broke the framing."""
    out: list[Wire] = []
    pos = 0
    while pos < len(data):
        try:
            end = _next_end(data, pos)
            if end > len(data):
                break
            top = wire_fields(data, pos, end)
        except ValueError:
            break
        out.extend(top)
        pos = top[0].end
    return out


def _next_end(data: bytes, pos: int) -> int:
    """The end of the one top-level field at ``pos`` (so each is walked on its own)."""
    key, p = _read_varint(data, pos, len(data))
    wt = key & 7
    if wt == 0:
        return _read_varint(data, p, len(data))[1]
    if wt == 2:
        length, p = _read_varint(data, p, len(data))
        return p + length
    return p + (8 if wt == 1 else 4)


def m_length(rng, data):
    """A LEN field's declared length changed, the enclosing fields left as they were."""
    fields = [f for f in _fields_of(data) if f.wt == 2]
    if not fields:
        return m_byte_flip(rng, data)
    f = rng.choice(fields)
    old = f.end - f.value_start
    new = rng.choice((0, 1, max(0, old - 1), old + 1, old * 2, old + 1000, *INTERESTING_INTS[10:]))
    return data[:f.head_end] + _varint(new) + data[f.value_start:], f"length of field {f.path}@{f.tag_start} " \
                                                                    f"{old} -> {new}"


def m_tag(rng, data):
    """A field's number or wire type changed (enclosing lengths fixed, so the rest still frames)."""
    if not _fields_of(data):
        return m_byte_flip(rng, data)
    f = rng.choice(_fields_of(data))
    number = rng.choice((f.number, f.number, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 101, 1 << 20, (1 << 29) - 1))
    wt = rng.choice((f.wt, f.wt, 0, 1, 2, 5, 3, 6))
    return _splice(data, f, f.tag_start, f.head_end, _varint(number << 3 | wt)), \
        f"tag of field {f.path}@{f.tag_start} -> number {number} wire type {wt}"


def m_varint_value(rng, data):
    """A varint field's value (dims of old blobs, enum types, flags, counts) set to an extreme."""
    fields = [f for f in _fields_of(data) if f.wt == 0]
    if not fields:
        return m_tag(rng, data)
    f = rng.choice(fields)
    value = rng.choice(INTERESTING_INTS)
    return _splice(data, f, f.value_start, f.end, _varint(value)), f"varint {f.path}@{f.tag_start} -> {value}"


def m_shape(rng, data):
    """A blob's packed shape dims rewritten: one dim huge, zero, 'negative', dims added or dropped."""
    from senet_zoo.converters import caffe_pb2

    shapes = [f for f in _fields_of(data) if f.wt == 2 and len(f.path) >= 2 and f.path[-2:] == (7, 1)]
    if not shapes:
        return m_varint_value(rng, data)
    f = rng.choice(shapes)
    dims = list(caffe_pb2.BlobShape.FromString(data[f.tag_start:f.end]).dim)
    how = rng.randrange(4)
    if how == 0 and dims:
        dims[rng.randrange(len(dims))] = rng.choice(INTERESTING_INTS + (-1, -(1 << 40)))
    elif how == 1:
        dims.insert(rng.randrange(len(dims) + 1), rng.choice((1, 1, 2, 0, 1 << 33)))
    elif how == 2 and dims:
        dims.pop(rng.randrange(len(dims)))
    else:
        rng.shuffle(dims)
    payload = caffe_pb2.BlobShape(dim=[d if d < 1 << 63 else d - (1 << 64) for d in dims]).SerializeToString()
    return _splice(data, f, f.tag_start, f.end, payload), f"shape {f.path}@{f.tag_start} -> {dims}"


def m_duplicate_field(rng, data):
    """A whole field (a layer, a blob, a shape, a name) repeated in place."""
    if not _fields_of(data):
        return m_byte_flip(rng, data)
    f = rng.choice(_fields_of(data))
    return _splice(data, f, f.end, f.end, data[f.tag_start:f.end]), f"field {f.path}@{f.tag_start} duplicated"


def m_delete_field(rng, data):
    if not _fields_of(data):
        return m_byte_flip(rng, data)
    f = rng.choice(_fields_of(data))
    return _splice(data, f, f.tag_start, f.end, b""), f"field {f.path}@{f.tag_start} deleted"


def m_bulk(rng, data):
    """A file made large the ways that once cost minutes or gigabytes: many empty layer records, interleaved
    non-packed value records, many blobs, many dims, a huge name, a huge packed field."""
    fields = _fields_of(data)
    blobs = [f for f in fields if f.wt == 2 and len(f.path) == 2 and f.path[1] in (6, 7)]
    if not blobs:
        return m_byte_flip(rng, data)
    blob = rng.choice(blobs)
    k = rng.choice((1000, 50_000, 99_990, 200_000))
    how = rng.randrange(6)
    if how == 0:
        return data + _field(blob.path[0], b"") * k, f"{k} empty layer records appended"
    if how == 1:
        pattern = rng.choice((b"\x2d\x00\x00\x80\x3f\x2a\x00", b"\x2d\x00\x00\x80\x3f\x41" + bytes(8),
                              b"\x2d\x00\x00\x80\x3f" * 3 + b"\x0d\x00\x00\x00\x00"))
        return _splice(data, _inside(blob), blob.value_start, blob.end, pattern * k), \
            f"blob {blob.path}@{blob.tag_start}: {k} x {pattern.hex()}"
    layer = blob.ancestors[0]
    if how == 2:
        return _splice(data, _inside(layer), blob.end, blob.end, data[blob.tag_start:blob.end] * min(k, 5000)), \
            f"blob {blob.path}@{blob.tag_start} repeated {min(k, 5000)} times"
    if how == 3:
        dims = _field(1, _varint(1) * k)
        return _splice(data, _inside(blob), blob.value_start, blob.end, _field(7, dims)), f"blob shape of {k} dims"
    if how == 4:
        return _splice(data, _inside(layer), layer.value_start, layer.value_start, _field(1, b"n" * (k * 10))), \
            f"layer@{layer.tag_start} given a name of {k * 10} bytes"
    return _splice(data, _inside(blob), blob.value_start, blob.end, _field(5, bytes(4 * k * 5))), \
        f"blob {blob.path}@{blob.tag_start}: packed data of {k * 5} floats"


PROTO_MUTATIONS = (m_length, m_tag, m_varint_value, m_shape, m_duplicate_field, m_delete_field)


def mutate_caffemodel(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    steps = []
    if rng.random() < 0.05:
        data, what = m_bulk(rng, data)
        return data, f"bulk: {what}"
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.choice(PROTO_MUTATIONS * 2 + BYTE_MUTATIONS)
        data, what = op(rng, data)
        steps.append(f"{op.__name__[2:]}: {what}")
        if not data:
            break
    return data, "; ".join(steps)


def _hdf5_items(f):
    import h5py

    datasets, groups = [], []

    def visit(name, item):
        (datasets if isinstance(item, h5py.Dataset) else groups).append(name)

    f.visititems(visit)
    return datasets, groups


def mutate_hdf5(rng: random.Random, data: bytes, scratch: Path) -> tuple[bytes, str]:
    """Tampering through h5py on a copy (shapes, dtypes, attributes, names, links, storage) or raw bytes."""
    import h5py

    if rng.random() < 0.3:
        op = rng.choice(BYTE_MUTATIONS)
        data, what = op(rng, data)
        return data, f"{op.__name__[2:]}: {what}"
    scratch.write_bytes(data)
    with h5py.File(scratch, "r+") as f:
        datasets, groups = _hdf5_items(f)
        name = "data/" + rng.choice([d for d in datasets if d.startswith("data/")]).split("/", 1)[1]
        parent, key = name.rsplit("/", 1)
        values = f[name][()]
        how = rng.randrange(14)
        if how == 0:
            shapes = [values.reshape(-1).shape, (1,) + values.shape, values.shape[::-1], values.reshape(-1)[:1].shape,
                      (0,), values.shape + (1,)]
            shape = rng.choice(shapes)
            del f[name]
            filled = np.resize(values.reshape(-1), int(np.prod(shape))).reshape(shape)
            f.create_dataset(name, data=filled)
            what = f"{name} reshaped {values.shape} -> {shape}"
        elif how == 1:
            dtype = rng.choice(("f8", "f2", "i4", "u1", "i8", "bool", "c8", "S4"))
            del f[name]
            f.create_dataset(name, data=values.astype(dtype))
            what = f"{name} stored as {dtype}"
        elif how == 2:
            del f[name]
            f.create_dataset(name, data=np.zeros(values.shape, [("a", "f4"), ("b", "i4")]))
            what = f"{name} a compound dataset"
        elif how == 3:
            del f[name]
            f.create_dataset(name, data=np.float32(1.5))
            what = f"{name} a 0-d dataset"
        elif how == 4:
            shape = rng.choice(((1 << 28,), (1 << 20, 1 << 10), (3 << 30,)))
            del f[name]
            f.create_dataset(name, shape=shape, dtype="f4", chunks=True)
            what = f"{name} a sparse chunked dataset of shape {shape}"
        elif how == 5:
            del f[name]
            f.create_dataset(name, data=values, compression="gzip")
            what = f"{name} gzip-compressed"
        elif how == 6:
            del f[name]
            f.create_dataset(name, shape=values.shape, dtype="f4")
            what = f"{name} declared but never written"
        elif how == 7:
            new = rng.choice(("5", "00", "x", "0 ", "-1", "1000000", "٣"))
            f.move(name, f"{parent}/{new}")
            what = f"{name} renamed to {new!r}"
        elif how == 8:
            del f[name]
            what = f"{name} deleted"
        elif how == 9:
            f.create_dataset(f"{parent}/{len(f[parent])}", data=values)
            what = f"{parent} given an extra blob"
        elif how == 10:
            target = rng.choice((f[name], f[parent], f, f["data"]))
            big = rng.choice((np.zeros(16, "f4"), b"x" * 60000, "text", np.arange(3)))
            target.attrs[rng.choice(("shape", "0", "dtype", "CLASS"))] = big
            what = f"attribute on {target.name}"
        elif how == 11:
            f[f"{parent}/loop"] = f["data"]
            what = f"{parent}/loop: a hard link back to /data (a cycle)"
        elif how == 12:
            link = rng.choice((h5py.SoftLink("/data"), h5py.SoftLink("/nowhere"),
                               h5py.ExternalLink("missing.h5", "/data")))
            f[f"{parent}/link"] = link
            what = f"{parent}/link: {type(link).__name__}"
        else:
            deep = "/".join(["g"] * rng.choice((3, 70)))
            f.create_dataset(f"data/{deep}/0", data=np.ones(2, "f4"))
            what = f"data/{deep[:20]}.../0 nested"
    return scratch.read_bytes(), what


ODD_NUMBERS = ("٣", "３", "³", "①", "-1", "+5", "1e3", "0x10", "1_0", "5" * 5000, "99999999", "1000", "١٠", "5.0",
               "\u00a05", "0" * 90 + "7", "ⅴ", "𝟓", "")
ODD_LINE_BREAKS = ("\r\n", "\r", "\u2028", "\x85", "\x0b", "\x0c", "\n\n")


def mutate_label_txt(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if rng.random() < 0.35:
        op = rng.choice(BYTE_MUTATIONS)
        data, what = op(rng, data)
        return data, f"{op.__name__[2:]}: {what}"
    lines = data.decode().split("\n")
    i = rng.randrange(max(1, len(lines) - 1))
    how = rng.randrange(8)
    if how == 0:
        parts = lines[i].split(" ")
        parts[-1] = rng.choice(ODD_NUMBERS)
        lines[i] = " ".join(parts)
        what = f"line {i + 1} label -> {parts[-1][:20]!r}"
    elif how == 1:
        data = b"\xef\xbb\xbf" + data
        return data, "BOM added"
    elif how == 2:
        sep = rng.choice(ODD_LINE_BREAKS)
        return sep.join(lines).encode(), f"line breaks -> {sep!r}"
    elif how == 3:
        lines.insert(i, lines[i].rsplit(" ", 1)[0] + " " + str(rng.randrange(1000)))
        what = f"line {i + 1} repeated with another label"
    elif how == 4:
        lines[i] = lines[i] + rng.choice((" extra", "\x00", " 3 4", "\t", " #"))
        what = f"line {i + 1} given a trailing field"
    elif how == 5:
        lines[i] = "x" * rng.choice((1000, 1 << 20)) + " 5"
        what = f"line {i + 1} a very long name"
    elif how == 6:
        lines[i] = rng.choice(("", " ", "ILSVRC2012_val_00000001.JPEG", "٣ ٣", "\ufeffx 1"))
        what = f"line {i + 1} -> {lines[i]!r}"
    else:
        lines = lines[:i]
        what = f"only the first {i} lines"
    return "\n".join(lines).encode("utf-8", "surrogatepass"), what


ODD_JSON_VALUES = ("5" * 5000, "1e999", "-1", "1000", "3.0", "true", "null", '"5"', "[5]", "{}", "NaN", "Infinity",
                   "-0", "0" * 120, "1" + "0" * 30, '"\\ud800"', "1E2")


def mutate_label_json(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if rng.random() < 0.35:
        op = rng.choice(BYTE_MUTATIONS)
        data, what = op(rng, data)
        return data, f"{op.__name__[2:]}: {what}"
    text = data.decode()
    how = rng.randrange(7)
    values = [m.span() for m in re.finditer(r"(?<=: )\d+", text)]
    a, b = rng.choice(values)
    if how == 0:
        value = rng.choice(ODD_JSON_VALUES)
        return (text[:a] + value + text[b:]).encode(), f"value at {a} -> {value[:20]}"
    if how == 1:
        depth = rng.choice((10, 65, 1000, 20000))
        value = "[" * depth + "1" + "]" * depth
        return (text[:a] + value + text[b:]).encode(), f"value at {a} nested {depth} deep"
    if how == 2:
        depth = rng.choice((2, 64, 100000))
        return ("[" * depth + text + "]" * depth).encode(), f"document wrapped {depth} deep"
    if how == 3:
        return b"\xef\xbb\xbf" + data, "BOM added"
    if how == 4:
        key = text[text.index('"'):text.index(":")]
        return text.replace("{", "{" + key + ": 7,", 1).encode(), "a key repeated with another label"
    if how == 5:
        key = rng.choice(('"' + "k" * 100000 + '"', '"\\u0000"', '"\\ud800"', '""', '"a\\nb"'))
        return text.replace("{", "{" + key + ": 1,", 1).encode(), f"odd key {key[:12]}"
    top = rng.choice(("[]", "5", '"x"', "null", "[" + text + "]"))
    return top.encode(), f"top level -> {top[:12]}"


def case_input(fmt: str, seed: int, index: int, seeds: dict[str, bytes], scratch: Path) -> tuple[bytes, str, str]:
    """(bytes, description of the mutation, seed name) of case ``index``: the same three numbers, the same case."""
    rng = random.Random(f"{fmt}:{seed}:{index}")
    if fmt in ARCHIVE_FORMATS:
        data, what = mutate_archive(fmt, rng, seeds[fmt])
        return data, what, fmt
    if fmt == "hdf5":
        data, what = mutate_hdf5(rng, seeds["hdf5"], scratch)
        return data, what, "hdf5"
    if fmt in CAFFE_FORMATS:
        data, what = mutate_caffemodel(rng, seeds[fmt])
        return data, what, fmt
    if fmt == "labels_json":
        data, what = mutate_label_json(rng, seeds["labels_json"])
        return data, what, "labels_json"
    if fmt == "torch_zip":
        from .fuzz_torch_zip import mutate_torch_zip

        data, what = mutate_torch_zip(rng, seeds["torch_zip"], BYTE_MUTATIONS)
        return data, what, "torch_zip"
    kind = rng.choice(TXT_LABEL_KINDS)
    data, what = mutate_label_txt(rng, seeds[f"labels_{kind}"])
    return data, what, f"labels_{kind}"
