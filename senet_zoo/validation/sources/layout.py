"""Which images a folder or a list of archive members holds, and in which layout.

* ``flat``: the ``ILSVRC2012_img_val/`` folder, 50,000 JPEGs side by side;
* ``imagefolder``: one sub-folder per wnid (``n01440764/...``), whatever subset of the 1000 classes is
  present (torchvision's ImageFolder would number only the folders it finds; we keep the wnid).

Names are relative, ``/``-separated and sorted, so every source lists the same images the same way.
"""
from __future__ import annotations

import os
from pathlib import Path

from ... import classes
from ...errors import SenetZooError

IMG_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _is_listed(path: str) -> bool:
    """Whether the image at this relative path (``a/b/x.JPEG``) is one ``discover`` would list: a tar holds
    what extracting it gives, and the folder walk passes over hidden folders (``.thumbs/``, ``.AppleDouble/``)."""
    *folders, name = path.split("/")
    return _is_image(name) and not any(folder.startswith(".") for folder in folders)


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
    # a folder whose images all lie in hidden folders is no top folder, as the folder walk finds none in it
    names = [n for n in names if _is_listed(n.split("/", 1)[-1])]
    wnids = set(classes.sorted_wnids())
    tops = {n.split("/", 1)[0] for n in names}
    prefix = ""
    if len(tops) == 1 and all("/" in n for n in names) and next(iter(tops)) not in wnids:
        prefix = next(iter(tops)) + "/"
        names = [n[len(prefix):] for n in names]
    # a hidden top folder is passed over too, unless it is the dropped one, which --data would name
    names = [n for n in names if _is_listed(n)]
    if not names:
        raise SenetZooError(where, f"contains no images ({', '.join(IMG_EXTENSIONS[:3])}, ...)")
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
