"""The fuzzer's archive formats (issue 14): a tar of an ImageFolder tree (hard and symbolic links, a GNU long
name, a pax path, a GNU sparse member), a WebDataset shard (``.jpg``/``.cls``/``.json`` samples) and a parquet
file in the Hub's layout; their mutations; and the references the oracle compares an accepted reading with.

* ``tar``: header fields rewritten (size, also base-256 and negative; type; link target; name; sparse map;
  magic), checksums fixed or not, members duplicated, moved, deleted, pax records inserted (negative and huge
  sizes, paths, link paths, sparse maps, long values), truncation, raw bytes. Reference: the folder GNU tar
  extracts, read by the folder source.
* ``wds``: samples rewritten member by member (``.cls`` digits, ``.json`` documents and filenames, keys with
  dots, other extensions, meta members, links, order, duplicates), then sometimes the tar mutations above.
  Reference: the shard streamed by ``tarfile`` and grouped by webdataset's rule, labels by ``int()`` as timm's
  ``reader_wds`` reads them.
* ``parquet``: the table (row groups from one row to one group, compression, dictionary, page version, page
  size; label type and values, nulls, a flat ``image`` column, no ``path``, extra columns, repeated paths),
  then sometimes raw bytes. Reference: ``pyarrow.parquet.read_table`` of the whole file.

Images are small distinct byte strings: the oracle compares bytes, it does not decode.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

ARCHIVE_FORMATS = ("tar", "wds", "parquet")
W1, W2 = "n01440764", "n01443537"
SUFFIX = {"tar": ".tar", "wds": ".tar", "parquet": ".parquet"}


class Differs(Exception):
    """An accepted reading that is not what the reference reads."""


# ----------------------------------------------------------------------------------------------------------
# Seeds


def _payload(i: int, n: int) -> bytes:
    return bytes((i * 37 + k * 11) % 251 for k in range(n))


def _raw_member(name: str, payload: bytes = b"", type=tarfile.REGTYPE, link: str = "", fmt=tarfile.GNU_FORMAT,
                pax: dict | None = None) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime, ti.size = type, link, 1_500_000_000, len(payload)
    if pax:
        ti.pax_headers = pax
    return ti.tobuf(fmt, "utf-8", "surrogateescape") + payload + bytes(-len(payload) % 512)


def _gnu_sparse(name: str, chunks: list[tuple[int, bytes]], real_size: int) -> bytes:
    """An old GNU sparse member ('S'): up to four (offset, length) pairs in the header, the chunks' bytes after."""
    data = b"".join(c for _, c in chunks)
    block = bytearray(_raw_member(name, data)[:512])
    block[156:157] = b"S"
    pos = 386
    for offset, chunk in chunks:
        block[pos:pos + 12] = b"%011o\0" % offset
        block[pos + 12:pos + 24] = b"%011o\0" % len(chunk)
        pos += 24
    block[482] = 0
    block[483:495] = b"%011o\0" % real_size
    _fix_checksum(block, 0)
    return bytes(block) + data + bytes(-len(data) % 512)


def _fix_checksum(raw: bytearray, at: int) -> None:
    raw[at + 148:at + 156] = b" " * 8
    raw[at + 148:at + 156] = b"%06o\0 " % sum(raw[at:at + 512])


def tar_seed() -> bytes:
    parts = [
        _raw_member(f"{W1}/a.JPEG", _payload(1, 300)),
        _raw_member(f"{W1}/b.JPEG", _payload(2, 700)),
        _raw_member(f"{W1}/c.JPEG", type=tarfile.LNKTYPE, link=f"{W1}/a.JPEG"),
        _raw_member(f"{W2}/d.JPEG", type=tarfile.SYMTYPE, link=f"../{W1}/b.JPEG"),
        _raw_member(f"{W2}/" + "l" * 120 + ".JPEG", _payload(3, 200)),                 # a GNU long name
        _raw_member(f"{W2}/x.JPEG", _payload(4, 100), fmt=tarfile.PAX_FORMAT, pax={"path": f"{W2}/e.JPEG"}),
        _gnu_sparse(f"{W2}/s.JPEG", [(0, _payload(5, 512)), (2048, _payload(6, 300)), (3000, b"")], 3000),
        _raw_member(f"{W2}/f.JPEG", _payload(7, 50)),
    ]
    return b"".join(parts) + bytes(1024)


def wds_seed() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(1, 7):
            stem = f"ILSVRC2012_val_{i:08d}"
            for ext, payload in (("jpg", _payload(i, 100 + 40 * i)), ("cls", str(i * 101 % 1000).encode()),
                                 ("json", json.dumps({"filename": f"{stem}.JPEG", "label": i}).encode())):
                ti = tarfile.TarInfo(f"{stem}.{ext}")
                ti.size, ti.mtime = len(payload), 1_500_000_000
                tf.addfile(ti, io.BytesIO(payload))
    return out.getvalue()


def _parquet_rows() -> list[dict]:
    return [{"bytes": _payload(i, 80 + 30 * i), "path": f"ILSVRC2012_val_{i:08d}.JPEG", "label": i * 7 % 1000}
            for i in range(1, 9)]


def _write_parquet(rows: list[dict], **options) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"image": pa.array([{"bytes": r["bytes"], "path": r["path"]} for r in rows],
                                        pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "label": pa.array([r["label"] for r in rows], pa.int64())})
    return _to_bytes(table, **options)


def _to_bytes(table, **options) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return sink.getvalue().to_pybytes()


def parquet_seed() -> bytes:
    return _write_parquet(_parquet_rows(), row_group_size=3)


def archive_seeds() -> dict[str, bytes]:
    return {"tar": tar_seed(), "wds": wds_seed(), "parquet": parquet_seed()}


# ----------------------------------------------------------------------------------------------------------
# Tar mutations


def header_blocks(data: bytes) -> list[int]:
    """Offsets of the 512-byte blocks whose checksum field matches: the headers, as far as bytes can tell."""
    out = []
    for at in range(0, len(data) - 511, 512):
        block = data[at:at + 512]
        if not block.strip(b"\0"):
            continue
        field = block[148:156].split(b"\0", 1)[0].strip()
        try:
            stored = int(field or b"x", 8)
        except ValueError:
            continue
        if stored == sum(block[:148]) + 256 + sum(block[156:]):
            out.append(at)
    return out


SIZES = (b"%011o\0" % 0, b"%011o\0" % 1, b"%011o\0" % 511, b"%011o\0" % 513, b"%011o\0" % 0o77777777777,
         b"\xff" + (256 ** 11 - 1).to_bytes(11, "big"), b"\xff" + (256 ** 11 - 512).to_bytes(11, "big"),
         b"\xff" + (256 ** 11 - (1 << 40)).to_bytes(11, "big"), b"\x80" + (1 << 80).to_bytes(11, "big"),
         b"\x80" + (100_000).to_bytes(11, "big"), b"12345678901\0", b"zzzzzzzzzzz\0", b"\0" * 12)
TYPES = (b"0", b"\0", b"1", b"2", b"3", b"5", b"6", b"7", b"L", b"K", b"x", b"g", b"S", b"V", b"M", b"Z")
TARGETS = (f"{W1}/a.JPEG", f"{W1}/b.JPEG", f"../{W1}/a.JPEG", "/etc/hostname", "../../x.JPEG", f"{W2}/d.JPEG",
           "d.JPEG", ".", "", f"{W1}", f"{W1}/a.JPEG/x", "nowhere/../" + f"{W1}/a.JPEG", "a" * 150)
NAMES = (f"{W1}/a.JPEG", f"{W2}/d.JPEG", f"./{W1}/b.JPEG", f"/{W1}/z.JPEG", f"../{W1}/z.JPEG", f"{W1}/",
         f"{W1}/a.JPEG/", "", f"{W1}/new\n.JPEG", f"{W1}/" + "é" * 30 + ".JPEG", f"{W1}/.hidden.JPEG",
         "n99999999/x.JPEG", "x.JPEG", "__meta__")
PAX = (("size", "-1"), ("size", "-4096"), ("size", str(1 << 40)), ("size", "0"), ("size", "9" * 5000),
       ("path", f"{W1}/a.JPEG"), ("path", "../x.JPEG"), ("path", "/etc/passwd"), ("path", ""),
       ("linkpath", "/etc/passwd"), ("linkpath", f"{W1}/b.JPEG"), ("GNU.sparse.map", "0,10,5000,10"),
       ("GNU.sparse.size", "100000"), ("GNU.sparse.map", "x,y"), ("GNU.sparse.map", "-5,10"),
       ("GNU.sparse.major", "1"), ("comment", "c" * 3000), ("hdrcharset", "BINARY"), ("mtime", "nan"))


def _set(data: bytes, at: int, start: int, value: bytes, fix: bool) -> bytes:
    raw = bytearray(data)
    raw[at + start:at + start + len(value)] = value
    if fix:
        _fix_checksum(raw, at)
    return bytes(raw)


def pax_records(records: list[tuple[str, str]]) -> bytes:
    """pax records as POSIX lays them out, ``"%d %s=%s\n"`` whose length counts its own digits, written by hand
    rather than by tarfile so that tests can also write records tarfile never would."""
    body = b""
    for key, value in records:
        text = f" {key}={value}\n".encode()
        n = len(text) + len(str(len(text)))
        n += len(str(n)) - len(str(len(text)))
        body += str(n).encode() + text
    return body


def _pax_block(records: list[tuple[str, str]]) -> bytes:
    return _raw_member("././@PaxHeader", pax_records(records), type=tarfile.XHDTYPE, fmt=tarfile.USTAR_FORMAT)


def mutate_tar(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    from .fuzz_mutations import BYTE_MUTATIONS

    heads = header_blocks(data)
    if rng.random() < 0.15 or not heads:
        op = rng.choice(BYTE_MUTATIONS)
        out, what = op(rng, data)
        return out, f"{op.__name__[2:]}: {what}"
    at = rng.choice(heads)
    fix = rng.random() < 0.85
    how = rng.randrange(11)
    if how == 0:
        value = rng.choice(SIZES)
        return _set(data, at, 124, value, fix), f"size of header@{at} -> {value!r}"
    if how == 1:
        value = rng.choice(TYPES)
        return _set(data, at, 156, value, fix), f"type of header@{at} -> {value!r}"
    if how == 2:
        value = rng.choice(TARGETS).encode()[:100]
        return _set(data, at, 157, value.ljust(100, b"\0"), fix), f"link of header@{at} -> {value!r}"
    if how == 3:
        value = rng.choice(NAMES).encode()[:100]
        return _set(data, at, 0, value.ljust(100, b"\0"), fix), f"name of header@{at} -> {value!r}"
    if how == 4:
        value = rng.choice((b"%011o\0" % rng.choice((0, 50, 3000, 1 << 30)), b"\xff" * 12, b"\x80" + bytes(11)))
        spot = rng.choice((386, 398, 410, 483))
        return _set(data, at, spot, value, fix), f"sparse field {spot} of header@{at} -> {value!r}"
    if how == 5:
        value = rng.choice((b"ustar\x0000", b"ustar  \0", b"xxxxx\0\0\0"))
        return _set(data, at, 257, value, fix), f"magic of header@{at} -> {value!r}"
    ends = heads[1:] + [len(data) - 1024]
    i = heads.index(at)
    start, end = at, max(at + 512, ends[i])
    chunk = data[start:end]
    if how == 6:
        to = rng.choice(heads + [len(data) - 1024])
        return data[:to] + chunk + data[to:], f"member@{start}:{end} copied to {to}"
    if how == 7:
        return data[:start] + data[end:], f"member@{start}:{end} deleted"
    if how == 8:
        to = rng.choice(heads + [len(data) - 1024])
        rest = data[:start] + data[end:]
        to = to if to < start else max(start, to - len(chunk))
        return rest[:to] + chunk + rest[to:], f"member@{start}:{end} moved to {to}"
    if how == 9:
        records = [rng.choice(PAX) for _ in range(rng.randint(1, 3))]
        return data[:at] + _pax_block(records) + data[at:], f"pax {records} before header@{at}"
    cut = rng.choice((len(data) - 512, len(data) - 1024, at + 512, at + rng.randrange(1, 512)))
    return data[:cut], f"truncated to {cut} of {len(data)} bytes"


# ----------------------------------------------------------------------------------------------------------
# WebDataset and parquet mutations


ODD_CLS = ("٣", "３", "³", "-1", "+5", " 7\n", "1e3", "0x10", "1_0", "5" * 5000, "1000", "", "\u00a05",
           "0" * 60 + "7", "7\x00", "𝟓")
ODD_JSON = ('{"filename": "x\\ny.JPEG"}', '{"filename": ""}', '{"filename": 5}', '{"filename": "../../a.JPEG"}',
            '{"filename": "ILSVRC2012_val_00000001.JPEG"}', '{"filename": "a\\\\b.JPEG"}', "[]", "5", "{",
            "[" * 100_000 + "]" * 100_000, '{"a": ' + "9" * 5000 + "}", '{"filename": ".."}', "\xff\xfe")


def _members(data: bytes) -> list[list]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [[m.name, tf.extractfile(m).read() if m.isreg() else b"", m.type, m.linkname] for m in tf]


def _shard(members: list[list]) -> bytes:
    return b"".join(_raw_member(n, p if t in tarfile.REGULAR_TYPES else b"", t, l) for n, p, t, l in members) \
        + bytes(1024)


def mutate_wds(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if rng.random() < 0.25:
        data, what = mutate_tar(rng, data)
        return data, f"tar: {what}"
    members = _members(data)
    i = rng.randrange(len(members))
    name = members[i][0]
    how = rng.randrange(9)
    if how == 0:
        cls = [m for m in members if m[0].endswith(".cls")]
        m = rng.choice(cls)
        m[1] = rng.choice(ODD_CLS).encode()
        what = f"{m[0]} -> {m[1][:20]!r}"
    elif how == 1:
        js = [m for m in members if m[0].endswith(".json")]
        m = rng.choice(js)
        m[1] = rng.choice(ODD_JSON).encode("utf-8", "surrogateescape")
        what = f"{m[0]} -> {m[1][:30]!r}"
    elif how == 2:
        stem, _, ext = name.partition(".")
        new = rng.choice((f"{stem}.v2.{ext}", f"{stem}.{ext.upper()}", f"{stem}.png", f"{stem}.txt",
                          f"__{stem}__.{ext}", f"sub.dir/{stem}.{ext}", f"{stem}", f".{stem}.{ext}",
                          f"{stem}x.{ext}"))
        members[i][0] = new
        what = f"{name} renamed {new}"
    elif how == 3:
        j = rng.randrange(len(members))
        members.insert(j, members.pop(i))
        what = f"{name} moved to {j}"
    elif how == 4:
        members.insert(rng.randrange(len(members) + 1), list(members[i]))
        what = f"{name} duplicated"
    elif how == 5:
        members.pop(i)
        what = f"{name} deleted"
    elif how == 6:
        target = rng.choice(members)[0]
        members[i] = [name, b"", rng.choice((tarfile.SYMTYPE, tarfile.LNKTYPE)), target]
        what = f"{name} a link to {target}"
    elif how == 7:
        members.append([rng.choice(("README", "__key__.cls", "z.cls", "z.jpg", "z.json")), b"5", tarfile.REGTYPE, ""])
        what = f"{members[-1][0]} appended"
    else:
        stems = sorted({m[0].split(".")[0] for m in members})
        a, b = rng.sample(stems, 2)
        for m in members:
            if m[0].startswith(a + "."):
                m[0] = b + m[0][len(a):]
        what = f"key {a} renamed {b}"
    return _shard(members), what


def mutate_parquet(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    import pyarrow as pa

    from .fuzz_mutations import BYTE_MUTATIONS

    if rng.random() < 0.2:
        op = rng.choice(BYTE_MUTATIONS)
        out, what = op(rng, data)
        return out, f"{op.__name__[2:]}: {what}"
    rows = _parquet_rows()
    options = {"row_group_size": rng.choice((1, 2, 3, 8, 100)),
               "compression": rng.choice(("snappy", "none", "zstd", "gzip")),
               "use_dictionary": rng.random() < 0.5,
               "data_page_version": rng.choice(("1.0", "2.0")),
               "write_batch_size": rng.choice((1, 2, 1024)), "data_page_size": rng.choice((64, 1 << 20))}
    how = rng.randrange(10)
    what = ""
    if how == 0:
        rows[rng.randrange(len(rows))]["label"] = rng.choice((-1, 1000, 999, 0, 1 << 40))
        what = "a label out of range"
    elif how == 1:
        rows[rng.randrange(len(rows))]["path"] = rng.choice((rows[0]["path"], "", "a/b\\c.JPEG", "x\n.JPEG", None))
        what = "a path repeated, empty, odd or null"
    elif how == 2:
        rows[rng.randrange(len(rows))]["bytes"] = rng.choice((b"", None, bytes(300_000)))
        what = "image bytes empty, null or large"
    if how in (0, 1, 2, 9):
        return _write_parquet(rows, **options), f"{what} {options}".strip()
    image = pa.array([{"bytes": r["bytes"], "path": r["path"]} for r in rows],
                     pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    labels = pa.array([r["label"] for r in rows], pa.int64())
    if how == 3:
        t = rng.choice((pa.int8(), pa.uint64(), pa.string(), pa.float64(), pa.int32()))
        try:
            labels = labels.cast(t, safe=False)
        except pa.ArrowInvalid:
            labels = pa.array([str(r["label"]) for r in rows])
        table, what = pa.table({"image": image, "label": labels}), f"label as {t}"
    elif how == 4:
        table, what = pa.table({"image": pa.array([r["bytes"] for r in rows]), "label": labels}), "image flat binary"
    elif how == 5:
        table = pa.table({"image": pa.array([{"bytes": r["bytes"]} for r in rows]), "label": labels})
        what = "image without path"
    elif how == 6:
        table = pa.table({"label": labels, "image": image, "extra": pa.array([[1, 2]] * len(rows))})
        what = "columns reordered, an extra list column"
    elif how == 7:
        table = pa.table({"image": image.cast(pa.struct([("bytes", pa.large_binary()), ("path", pa.large_string())])),
                          "label": labels})
        what = "large_binary image bytes"
    else:
        table = pa.table({"img": image, "label": labels})
        what = "image column renamed"
    return _to_bytes(table, **options), f"{what} {options}"


def mutate_archive(fmt: str, rng: random.Random, seed: bytes) -> tuple[bytes, str]:
    if fmt == "tar":
        data, steps = seed, []
        for _ in range(rng.choice((1, 1, 2, 3))):
            data, what = mutate_tar(rng, data)
            steps.append(what)
        return data, "; ".join(steps)
    return (mutate_wds if fmt == "wds" else mutate_parquet)(rng, seed)


# ----------------------------------------------------------------------------------------------------------
# The oracle's two halves: our reading (timed, bounded) and the reference it must equal when accepted


def our_reading(path: Path, index_dir: Path) -> dict:
    """What ``--data path`` reads: {name: (sha256 of the bytes, label or None)}, notes; twice (the second time
    from the kept index), which must agree."""
    from senet_zoo.images.preprocess import BadImage
    from senet_zoo.validation.sources.factory import open_source

    readings = []
    for _ in range(2):
        src = open_source(path, index_dir)
        reader = src.make_reader(src.names)
        got = {}
        for i, name in enumerate(src.names):
            try:
                got[name] = [hashlib.sha256(reader.read(i)).hexdigest(), (src.labels or {}).get(name)]
            except BadImage as e:
                got[name] = ["bad image", str(e)[:80]]
        readings.append(got)
    if readings[0] != readings[1]:
        raise Differs("the second reading (from the kept index) differs from the first")
    return readings[0]


def reference(fmt: str, path: Path, scratch: Path) -> dict:
    try:
        return {"tar": _extracted, "wds": _webdataset, "parquet": _pyarrow}[fmt](path, scratch)
    except Differs:
        raise
    except Exception as e:  # noqa: BLE001 - the reference cannot read what we accepted: that is the finding
        raise Differs(f"accepted, but the reference cannot read it: {type(e).__name__}: {str(e)[:200]}") from None


def _extracted(path: Path, scratch: Path) -> dict:
    from senet_zoo.errors import SenetZooError
    from senet_zoo.validation.sources.factory import open_source

    out = scratch / "extracted"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tar = subprocess.run(["tar", "-xf", str(path), "-C", str(out)], capture_output=True, timeout=20)
    for root, dirs, files in os.walk(out):  # FIFOs and devices (root makes them): no image is read from them
        for name in files:
            if not stat.S_ISREG(os.lstat(os.path.join(root, name)).st_mode) and not \
                    os.path.islink(os.path.join(root, name)):
                os.unlink(os.path.join(root, name))
    try:
        src = open_source(out)
        reader = src.make_reader(src.names)
        return {n: [hashlib.sha256(reader.read(i)).hexdigest(), None] for i, n in enumerate(src.names)}
    except (SenetZooError, Exception) as e:  # noqa: BLE001 - any failure to read the folder is the finding
        raise Differs(f"accepted, but the folder tar -x gives (exit {tar.returncode}) cannot be read: "
                      f"{type(e).__name__}: {str(e)[:200]}") from None
    finally:
        shutil.rmtree(out, ignore_errors=True)


_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")   # webdataset/tariterators.py base_plus_ext


def _webdataset(path: Path, scratch: Path) -> dict:
    """The shard streamed as webdataset streams it (regular members, meta skipped, runs of one key)."""
    samples: list[dict] = []
    with tarfile.open(path, mode="r|") as stream:
        for ti in stream:
            if not ti.isreg() or re.match(r"__[^/]*__($|/)", ti.name):
                continue
            m = _KEY.match(ti.name)
            if not m:
                continue
            key, field = m.group(1), m.group(2).lower()
            if not samples or samples[-1]["__key__"] != key:
                samples.append({"__key__": key})
            samples[-1][field] = (ti.name, stream.extractfile(ti).read())
    out = {}
    for s in samples:
        image = next((v for k, v in s.items() if k != "__key__" and k.rsplit(".", 1)[-1] in
                      ("jpg", "jpeg", "png", "webp")), None)
        cls = next((v for k, v in s.items() if k != "__key__" and k.rsplit(".", 1)[-1] == "cls"), None)
        meta = next((v for k, v in s.items() if k != "__key__" and k.rsplit(".", 1)[-1] == "json"), None)
        if image is None:
            continue
        name = image[0]
        base = s["__key__"].rsplit("/", 1)[-1]
        if re.fullmatch(r"ILSVRC2012_val_\d{8}", base):
            name = base + ".JPEG"
        if meta is not None:
            doc = json.loads(meta[1])
            if isinstance(doc, dict) and isinstance(doc.get("filename"), str) and doc["filename"].strip():
                name = doc["filename"].strip().replace("\\", "/").rsplit("/", 1)[-1]
        out[name] = [hashlib.sha256(image[1]).hexdigest(), int(cls[1])]
    return out


def _pyarrow(path: Path, scratch: Path) -> dict:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    images, labels = table.column("image").to_pylist(), table.column("label").to_pylist()
    out = {}
    for row, (image, label) in enumerate(zip(images, labels)):
        image = image or {}
        p = image.get("path")
        name = p.replace("\\", "/").rsplit("/", 1)[-1] if p else f"{path.stem}/{row:08d}"
        out[name] = [hashlib.sha256(image["bytes"]).hexdigest(), label] if image.get("bytes") else ["bad image", None]
    return out


def same(ours: dict, ref: dict) -> str | None:
    """Where an accepted reading differs from the reference (bad images: only that both say so)."""
    if sorted(ours) != sorted(ref):
        missing, extra = sorted(set(ref) - set(ours)), sorted(set(ours) - set(ref))
        return f"names differ: missing {missing[:3]}, extra {extra[:3]}"
    for name in ours:
        a, b = ours[name], ref[name]
        if a[0] == "bad image" or b[0] == "bad image":
            if (a[0] == "bad image") != (b[0] == "bad image"):
                return f"{name}: {a[0][:20]} here, {b[0][:20]} in the reference"
            continue
        if a != b:
            return f"{name}: bytes or label differ ({a[1]} vs {b[1]})"
    return None


def environment_ok() -> bool:
    return shutil.which("tar") is not None and os.name == "posix"
