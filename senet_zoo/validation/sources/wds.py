"""WebDataset shards as in ``timm/imagenet-1k-wds``: tar files whose members ``KEY.jpg`` (``.jpeg``, ``.png``,
``.webp``) are images, ``KEY.cls`` their class index (ASCII decimal, sorted-wnid order) and ``KEY.json``, when
present, a JSON object whose ``filename`` is the image's original file name.

Samples are what the ``webdataset`` package makes of a shard (``tariterators``: ``tar_file_iterator``,
``base_plus_ext``, ``group_by_keys``): regular members only, ``__...__`` members skipped, a member's KEY is its
path up to the first dot of its last component and the rest its field (lower-cased), and a sample is a run of
consecutive members with the same KEY. Where ``webdataset`` would raise (a field twice in a sample) or yield
what a reader cannot tell apart (a KEY in two places of a shard), the shard is refused in one line; a link
named like an image or label is refused too, since ``webdataset`` skips it and the sample would lose it. Which
field is the image, the label, the metadata goes by its last extension (``v2.jpg`` is an image), as
``webdataset``'s decoders do. The small ``.cls``/``.json`` members are read once while the set is built,
within bounds (``MAX_CLS_BYTES``, ``MAX_JSON_BYTES``, ``jsonio``'s nesting and number limits).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ... import classes, jsonio
from ...errors import SenetZooError
from .tar import FILE, Header, ShortRead, TarReader, member_bytes

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
VAL_STEM = re.compile(r"ILSVRC2012_val_\d{8}")
BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")
MAX_SHARDS = 100_000          # names a brace pattern may expand to
MAX_CLS_BYTES = 64            # a class index with some white space around it
MAX_JSON_BYTES = 1 << 20      # a sample's metadata
_KEY = re.compile(r"((?:.*/)?[^.]+)\.([^/]*)", re.DOTALL)   # webdataset's base_plus_ext rule
_META = re.compile(r"__[^/]*__($|/)")                         # webdataset's skipped members
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SKIPPED = {"hardlink": "a hard link", "symlink": "a symbolic link", "unknown": "a member of an unknown type"}


def shard_count(pattern: str) -> int:
    """How many names ``pattern``'s ranges expand to (refused beyond ``MAX_SHARDS``), without listing them."""
    count = 1
    for m in BRACE.finditer(pattern):
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise SenetZooError(pattern, f"empty range {{{m.group(1)}..{m.group(2)}}}")
        count *= hi - lo + 1
        if count > MAX_SHARDS:
            raise SenetZooError(pattern, f"the brace pattern names more than {MAX_SHARDS:,} shards "
                                f"({_shown(count)}); a validation set needs far fewer")
    return count


def _shown(count: int) -> str:
    return f"{count:,}" if count < 10 ** 15 else f"about 10^{int(math.log10(count))}"


def expand_braces(pattern: str) -> Iterator[str]:
    """``val-{000000..000063}.tar`` -> the 64 names in order; several ranges multiply out. Padded as bash (and
    webdataset's ``braceexpand``) pad: when either bound has a leading zero, every name has the longer bound's
    width (``{1..010}`` is ``001`` ... ``010``). A generator: the caller can stop at the first missing shard."""
    shard_count(pattern)
    m = BRACE.search(pattern)
    if m is None:
        yield pattern
        return
    lo, hi = m.group(1), m.group(2)
    padded = any(len(bound) > 1 and bound.startswith("0") for bound in (lo, hi))
    width = max(len(lo), len(hi)) if padded else 0
    for n in range(int(lo), int(hi) + 1):
        yield from expand_braces(pattern[:m.start()] + str(n).zfill(width) + pattern[m.end():])


def split_key(member: str) -> tuple[str | None, str]:
    """(KEY, field) of a member name by webdataset's rule; (None, '') for a name it skips (no dot)."""
    m = _KEY.fullmatch(member)
    return (m.group(1), m.group(2)) if m else (None, "")


def _role(field_name: str) -> str | None:
    ext = field_name.rsplit(".", 1)[-1]
    return "image" if ext in IMAGE_EXTS else ext if ext in ("cls", "json") else None


def is_shard(headers: list[Header]) -> bool:
    """Whether a tar holds WebDataset samples (any ``.cls`` member)."""
    return any(_role(split_key(h.name)[1].lower()) == "cls" for h in headers)


@dataclass
class _Sample:
    key: str
    fields: dict[str, Header] = field(default_factory=dict)   # lower-cased field -> member


def samples(shard: Path, headers: list[Header]) -> list[_Sample]:
    """The shard's samples as webdataset groups its members (see the module docstring)."""
    out: list[_Sample] = []
    seen: dict[str, str] = {}
    current = None
    for h in headers:
        key, name = split_key(h.name)
        if h.kind != FILE:
            if key is not None and _role(name.lower()) in ("image", "cls"):
                raise SenetZooError(shard, f"member {h.name} is {_SKIPPED[h.kind]}"
                                    f"{' to ' + h.link if h.link else ''}: WebDataset readers skip it, so its "
                                    "sample would lose it")
            continue
        if key is None or _META.match(h.name):
            continue
        name = name.lower()
        if current is None or key != current.key:
            if key in seen:
                raise SenetZooError(shard, f"member {h.name}: the key {key} is used twice (also by "
                                    f"{seen[key]}): WebDataset keys name one sample each")
            seen[key] = h.name
            current = _Sample(key)
            out.append(current)
        if name in current.fields:
            raise SenetZooError(shard, f"member {h.name}: the sample {key} already has a {name} member "
                                f"({current.fields[name].name})")
        current.fields[name] = h
    return out


def scan_shards(shards: list[tuple[Path, list[Header]]]):
    """(names, {name: (shard index, member, offset, size, sparse)}, {name: label}) of every sample."""
    entries: dict[str, tuple] = {}
    labels: dict[str, int] = {}
    for s, (shard, headers) in enumerate(shards):
        try:
            fd = os.open(shard, os.O_RDONLY)
        except OSError as e:
            raise SenetZooError(shard, f"cannot read it ({e.strerror or e})") from None
        try:
            for sample in samples(shard, headers):
                read = _read_sample(shard, fd, sample)
                if read is None:
                    continue
                name, image, label = read
                if name in entries:
                    other = shards[entries[name][0]][0]
                    raise SenetZooError(shard, f"member {image.name}: the image {name} is also in {other.name}")
                entries[name] = (s, image.name, image.data, image.size, image.sparse)
                labels[name] = label
        finally:
            os.close(fd)
    if not entries:
        first = shards[0][0]
        raise SenetZooError(first if len(shards) == 1 else first.parent,
                            "holds no WebDataset samples (KEY.jpg with KEY.cls)")
    return sorted(entries), entries, labels


def _read_sample(shard: Path, fd: int, sample: _Sample):
    """(name, image member, label) of a sample, None for one that is no image sample (no image, no label)."""
    roles: dict[str, list[str]] = {}
    for name in sample.fields:
        role = _role(name)
        if role is not None:
            roles.setdefault(role, []).append(name)
    for role, names in roles.items():
        if len(names) > 1:
            raise SenetZooError(shard, f"member {sample.fields[names[1]].name}: the sample {sample.key} has "
                                f"{len(names)} {role} members ({', '.join(sample.fields[n].name for n in names)})")
    if "image" not in roles:
        if "cls" in roles:
            raise SenetZooError(shard, f"member {sample.fields[roles['cls'][0]].name}: a label without an image "
                                f"({sample.key}.jpg)")
        return None
    image = sample.fields[roles["image"][0]]
    if "cls" not in roles:
        raise SenetZooError(shard, f"member {image.name}: no {sample.key}.cls label beside it")
    label = _read_cls(shard, fd, sample.fields[roles["cls"][0]])
    meta = sample.fields[roles["json"][0]] if "json" in roles else None
    return _name(shard, fd, sample.key, image, meta), image, label


def _member_bytes(shard: Path, fd: int, member: Header, limit: int, what: str) -> bytes:
    if member.size > limit:
        raise SenetZooError(shard, f"member {member.name}: {member.size:,} bytes, more than the {limit:,} of "
                            f"{what}")
    try:
        return member_bytes(fd, member.data, member.size, member.sparse)
    except (OSError, ShortRead) as e:
        raise SenetZooError(shard, f"member {member.name}: cannot read it ({e})") from None


def _read_cls(shard: Path, fd: int, member: Header) -> int:
    raw = _member_bytes(shard, fd, member, MAX_CLS_BYTES, "a class index")
    text = raw.strip(b" \t\r\n").decode("utf-8", "replace")
    value = classes.class_number(text, 0, classes.NUM_CLASSES - 1)
    if value is None:
        raise SenetZooError(shard, f"member {member.name}: {text[:20]!r} is not a class index 0..999 (ASCII "
                            "digits)")
    return value


def _name(shard: Path, fd: int, key: str, image: Header, meta: Header | None) -> str:
    """The image's original file name when the sample says it (``.json`` ``filename``), else from the key."""
    if meta is not None:
        raw = _member_bytes(shard, fd, meta, MAX_JSON_BYTES, "a sample's metadata")
        try:
            doc = jsonio.loads(raw, max_bytes=MAX_JSON_BYTES)
        except ValueError as e:
            raise SenetZooError(shard, f"member {meta.name}: not usable JSON ({e})") from None
        filename = doc.get("filename") if isinstance(doc, dict) else None
        if isinstance(filename, str) and filename.strip():
            base = filename.strip().replace("\\", "/").rsplit("/", 1)[-1]
            if _CONTROL.search(base) or base in ("", ".", ".."):
                raise SenetZooError(shard, f"member {meta.name}: {filename[:60]!r} is not a file name")
            return base
    base = key.rsplit("/", 1)[-1]
    # timm's shards key validation images by their stem: the original name ends in .JPEG
    return f"{base}.JPEG" if VAL_STEM.fullmatch(base) else image.name


def shard_reader(shards: list[Path], names: list[str], entries: dict) -> TarReader:
    return TarReader([str(s) for s in shards], [entries[n] for n in names], kind="wds")
