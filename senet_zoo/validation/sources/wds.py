"""WebDataset shards as in ``timm/imagenet-1k-wds``: tar files whose members ``KEY.jpg`` (``.jpeg``, ``.JPEG``,
``.png``, ``.webp``) are images, ``KEY.cls`` their class index (decimal text, sorted-wnid order) and ``KEY.json``,
when present, a JSON object whose ``filename`` is the image's original file name.

A sample's KEY is the member name up to the first dot of its last path component, as webdataset's own
``base_plus_ext`` splits it. Shards are indexed and read in place like any tar (``tar_source.py``); the small
``.cls``/``.json`` members are read once while the set is built.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ... import classes
from ...errors import SenetZooError
from .tar import TarReader, tar_members

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
VAL_STEM = re.compile(r"ILSVRC2012_val_\d{8}")
BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(pattern: str) -> list[str]:
    """``val-{000000..000063}.tar`` -> the 64 names (zero padding kept); several ranges multiply out."""
    m = BRACE.search(pattern)
    if m is None:
        return [pattern]
    lo, hi = m.group(1), m.group(2)
    if int(hi) < int(lo):
        raise SenetZooError(pattern, f"empty range {{{lo}..{hi}}}")
    width = len(lo) if lo.startswith("0") else 0
    out = []
    for n in range(int(lo), int(hi) + 1):
        out.extend(expand_braces(pattern[:m.start()] + str(n).zfill(width) + pattern[m.end():]))
    return out


def split_key(member: str) -> tuple[str, str]:
    """(KEY, extension) of a member name: the extension starts at the first dot of the last component."""
    head, _, base = member.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext if dot else ""


def is_shard(path: Path, index_dir: Path | None) -> bool:
    """Whether a tar holds WebDataset samples (any ``.cls`` member)."""
    return any(split_key(name)[1].lower() == "cls" for name, _, _ in tar_members(path, index_dir))


def scan_shards(shards: list[Path], index_dir: Path | None):
    """(names, {name: (shard index, member, offset, size)}, {name: label}) of every sample of ``shards``."""
    entries: dict[str, tuple[int, str, int, int]] = {}
    labels: dict[str, int] = {}
    for s, shard in enumerate(shards):
        samples: dict[str, dict[str, tuple[str, int, int]]] = {}
        for member in tar_members(shard, index_dir):
            key, ext = split_key(member[0])
            if ext:
                samples.setdefault(key, {})[ext] = member
        fd = os.open(shard, os.O_RDONLY)
        try:
            for key, parts in samples.items():
                lower = {ext.lower(): ext for ext in parts}
                image_ext = next((lower[e] for e in IMAGE_EXTS if e in lower), None)
                if image_ext is None:
                    if "cls" in lower:
                        raise SenetZooError(shard, f"member {parts[lower['cls']][0]}: a label without an image "
                                            f"({key}.jpg)")
                    continue
                image = parts[image_ext]
                if "cls" not in lower:
                    raise SenetZooError(shard, f"member {image[0]}: no {key}.cls label beside it")
                label = _read_cls(shard, fd, parts[lower["cls"]])
                name = _name(shard, fd, key, image_ext, parts.get(lower.get("json", ""), None))
                if name in entries:
                    other = shards[entries[name][0]]
                    raise SenetZooError(shard, f"member {image[0]}: the image {name} is also in {other.name}")
                entries[name] = (s, *image)
                labels[name] = label
        finally:
            os.close(fd)
    if not entries:
        raise SenetZooError(shards[0] if len(shards) == 1 else shards[0].parent,
                            "holds no WebDataset samples (KEY.jpg with KEY.cls)")
    return sorted(entries), entries, labels


def _member_bytes(shard: Path, fd: int, member: tuple[str, int, int]) -> bytes:
    name, offset, size = member
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise SenetZooError(shard, f"member {name}: truncated")
    return data


def _read_cls(shard: Path, fd: int, member: tuple[str, int, int]) -> int:
    text = _member_bytes(shard, fd, member).decode("utf-8", "replace").strip()
    if not re.fullmatch(r"-?\d+", text):
        raise SenetZooError(shard, f"member {member[0]}: {text[:20]!r} is not a class index")
    value = int(text)
    if not 0 <= value < classes.NUM_CLASSES:
        raise SenetZooError(shard, f"member {member[0]}: label {value} is not a class index 0..999")
    return value


def _name(shard: Path, fd: int, key: str, image_ext: str, json_member) -> str:
    """The image's original file name when the sample says it (``.json`` ``filename``), else from the key."""
    if json_member is not None:
        try:
            meta = json.loads(_member_bytes(shard, fd, json_member))
        except (ValueError, UnicodeDecodeError) as e:
            raise SenetZooError(shard, f"member {json_member[0]}: not valid JSON ({e})") from None
        filename = meta.get("filename") if isinstance(meta, dict) else None
        if isinstance(filename, str) and filename.strip():
            return filename.strip().replace("\\", "/").rsplit("/", 1)[-1]
    base = key.rsplit("/", 1)[-1]
    # timm's shards key validation images by their stem: the original name ends in .JPEG
    return f"{base}.JPEG" if VAL_STEM.fullmatch(base) else f"{key}.{image_ext}"


def shard_reader(shards: list[Path], names: list[str], entries: dict) -> TarReader:
    return TarReader([str(s) for s in shards], [entries[n] for n in names], kind="wds")
