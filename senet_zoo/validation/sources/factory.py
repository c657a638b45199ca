"""``--data`` to a ``Source``: what the user holds, detected by content, never by name.

A folder; a tar file read in place (the original ``ILSVRC2012_img_val.tar`` or a tar of an ImageFolder tree);
WebDataset shards (a tar with ``KEY.cls`` members, a folder of such ``*.tar``, or a brace pattern
``val-{000000..000063}.tar``); parquet files in the Hub's layout (a file or a folder of ``*.parquet``);
``hf://datasets/OWNER/NAME[@REVISION]`` (fetched and verified by ``hf``, then parquet or WebDataset). Each
branch hands over to its reader's module; the heavy backends (pyarrow, huggingface_hub) are imported only by the
branch that needs them. Whatever a source calls its images, they are listed under their canonical names
(``val_names``): the Hub's ``ILSVRC2012_val_00000001_n01751748.JPEG`` is ``ILSVRC2012_val_00000001.JPEG``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ... import val_names
from ...errors import SenetZooError
from . import hf, parquet, tar, wds
from .folder import FolderReader
from .layout import _is_image, classify, discover


@dataclass
class Source:
    """What ``--data`` holds, before the subset and the labels are chosen."""
    kind: str                        # folder | tar | wds | parquet
    root: Path
    layout: str                      # flat | imagefolder
    names: list[str]                 # sorted
    make_reader: object              # names -> reader
    labels: dict[str, int] | None = None   # labels the source carries (.cls, parquet label)
    label_source: str | None = None
    uri: str | None = None
    notes: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # canonical name -> the source's own (Hub) name


def open_source(data: str | os.PathLike, index_dir: str | os.PathLike | None = None) -> Source:
    """Detect what ``--data`` is by its content and list its images under their canonical names
    (``val_names``; see the module docstring)."""
    return _canonical(_open(data, index_dir))


def _canonical(src: Source) -> Source:
    """The images under their canonical names: the Hub's ``ILSVRC2012_val_00000001_n01751748.JPEG`` becomes
    ``ILSVRC2012_val_00000001.JPEG`` for everything above the source; the reader still gets its own names."""
    own: dict[str, str] = {}
    for name in src.names:
        canonical = val_names.canonical(name)
        if canonical in own:
            raise SenetZooError(src.root, f"holds {own[canonical]} and {name}: the same validation image twice")
        own[canonical] = name
    renamed = {c: n for c, n in own.items() if c != n}
    if not renamed:
        return src
    make_reader = src.make_reader
    src.names = sorted(own)
    src.make_reader = lambda chosen: make_reader([own[n] for n in chosen])
    if src.labels is not None:
        src.labels = {c: src.labels[n] for c, n in own.items()}
    src.renamed = renamed
    return src


def _open(data: str | os.PathLike, index_dir: str | os.PathLike | None) -> Source:
    text = os.fspath(data)
    if hf.is_hf_uri(text):
        split = hf.fetch(text)
        src = (_wds(*_indexed(split.files, index_dir), root=split.files[0].parent) if split.kind == "wds"
               else _parquet(split.files, split.files[0].parent))
        src.uri = split.uri
        src.notes.extend(split.notes)
        return src
    if wds.BRACE.search(text):
        return _pattern(text, index_dir)
    root = Path(text)
    if root.is_file():
        kind = tar.sniff(root)
        if kind == "parquet":
            return _parquet([root], root)
        if kind in ("tar", "compressed"):
            headers, notes = tar.tar_headers(root, index_dir)
            if wds.is_shard(headers):
                return _wds([(root, headers)], notes, root=root)
            return _tar(root, headers, notes)
        discover(root)  # raises: not a directory, tar or parquet file
    if root.is_dir():
        try:
            entries = sorted(e.name for e in os.scandir(root) if not e.name.startswith(".") and e.is_file())
        except OSError as e:
            raise SenetZooError(root, f"cannot list directory ({e.strerror})") from None
        if not any(_is_image(n) for n in entries):
            tars = [root / n for n in entries if n.lower().endswith(".tar")]
            parquets = [root / n for n in entries if n.lower().endswith(".parquet")]
            if tars and parquets:
                raise SenetZooError(root, f"holds both tar ({tars[0].name}, ...) and parquet files "
                                    f"({parquets[0].name}, ...); point --data at one of them")
            if parquets:
                return _parquet(parquets, root)
            if tars:
                shards, notes = [], []
                for t in tars:
                    headers, more = tar.tar_headers(t, index_dir)
                    if not wds.is_shard(headers):
                        raise SenetZooError(t, "not a WebDataset shard (no KEY.cls members); pass a single tar "
                                            "file as --data to read its images by name")
                    shards.append((t, headers))
                    notes += more
                return _wds(shards, notes, root=root)
    layout, names = discover(root)
    return Source("folder", root, layout, names, lambda chosen: FolderReader(root, chosen))


def _pattern(text: str, index_dir) -> Source:
    """Shards named by a brace pattern: at most ``wds.MAX_SHARDS``, the first missing one refused at once."""
    total = wds.shard_count(text)
    for i, name in enumerate(wds.expand_braces(text), 1):  # all there before any is read
        if not os.path.isfile(name):
            raise SenetZooError(name, f"no such shard (shard {i:,} of the {total:,} that {Path(text).name} names)")
    return _wds(*_indexed([Path(name) for name in wds.expand_braces(text)], index_dir), root=Path(text))


def _indexed(paths: list[Path], index_dir) -> tuple[list[tuple[Path, list]], list[str]]:
    """([(tar, its headers)], the notes of reading them)."""
    shards, notes = [], []
    for path in paths:
        headers, more = tar.tar_headers(path, index_dir)
        shards.append((Path(path), headers))
        notes += more
    return shards, notes


def _is_image_path(name: str) -> bool:
    return _is_image(name.rsplit("/", 1)[-1])


def _tar(path: Path, headers: list, notes: list[str]) -> Source:
    files = tar.extract(path, headers, _is_image_path)
    layout, names, prefix = classify(path, list(files.members))
    entries = {}
    for n in names:
        m = files.members[prefix + n]
        entries[n] = (0, prefix + n, m.data, m.size, m.sparse)
    return Source("tar", path, layout, names,
                  lambda chosen: tar.TarReader([str(path)], [entries[n] for n in chosen]),
                  notes=_unique(notes + files.notes))


def _wds(shards: list, notes: list[str], root: Path) -> Source:
    names, entries, labels = wds.scan_shards(shards)
    paths = [s for s, _ in shards]
    source = (f"WebDataset .cls members of {len(shards)} shard{'s' if len(shards) > 1 else ''} (sorted-wnid "
              "indices, as timm/imagenet-1k-wds)")
    return Source("wds", root, "flat", names, lambda chosen: wds.shard_reader(paths, chosen, entries),
                  labels, source, notes=_unique(notes))


def _unique(notes: list[str]) -> list[str]:
    """Each note once (one per shard would repeat the same words)."""
    return list(dict.fromkeys(notes))


def _parquet(files: list[Path], root: Path, uri: str | None = None) -> Source:
    notes = []
    stems = [f.name for f in files]
    split = [f for f in files if f.name.startswith("validation")]
    if not root.is_dir():  # a file named on the command line is read whatever its name
        pass
    elif split and len(split) < len(files):  # the Hub's data/ folder holds every split: evaluate on validation
        notes.append(f"read the {len(split)} validation-*.parquet of {len(files)} parquet files")
        files = split
    elif any(n.startswith(("train", "test")) for n in stems) and not split:
        raise SenetZooError(root, f"holds {stems[0]}, ... but no validation-*.parquet: point --data at the "
                            "validation split")
    names, entries, labels = parquet.scan_files(files)
    source = (f"parquet label column of {len(files)} file{'s' if len(files) > 1 else ''} (sorted-wnid indices, "
              "as the Hub's imagenet-1k)")
    return Source("parquet", root, "flat", names,
                   lambda chosen: parquet.ParquetReader(files, [entries[n] for n in chosen], chosen),
                   labels, source, uri, notes)
