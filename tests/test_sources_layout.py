"""validation/sources/layout.py read directly: which files are images, the flat and ImageFolder layouts of a
folder (discover) and of a tar's member list (classify), and every refusal, word for word, on hand-built trees."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation.sources import layout

FIRST, LAST, MIDDLE = "n01440764", "n15075141", "n04596742"   # sorted-wnid classes 0, 999 and one between
IMAGE_NAMES = ["a.jpeg", "b.jpg", "c.png", "d.bmp", "e.webp", "f.tif", "g.tiff", "h.ppm", "i.pgm", "j.pbm",
               "K.JPEG", "L.JpG", "M.PNG", "N.TIFF", "o.Pbm"]
NOT_IMAGES = [".hidden.jpg", ".jpg", "x.txt", "x.jpeg.bak", "jpg", "x.gif", "x.jpe", "x_jpg", "x.json", "x.tar"]


def touch(root: Path, *names: str) -> Path:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return root


def refused(fn, *args) -> str:
    with pytest.raises(SenetZooError) as e:
        fn(*args)
    return str(e.value)


def test_which_names_are_images():
    assert layout.IMG_EXTENSIONS == (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
                                     ".pbm")
    assert [n for n in IMAGE_NAMES if not layout._is_image(n)] == []
    assert [n for n in NOT_IMAGES if layout._is_image(n)] == []


# --- discover: a folder --------------------------------------------------------------------------------------

def test_a_flat_folder_lists_its_images_sorted(tmp_path):
    root = touch(tmp_path / "val", *reversed(IMAGE_NAMES), *NOT_IMAGES, "ILSVRC2012_val_00000002.JPEG",
                 "ILSVRC2012_val_00000001.JPEG", "empty_dir/readme.txt", ".git/x.jpg")
    (root / "a.jpg.d").mkdir()            # a folder named like an image is not one
    (root / "no_images").mkdir()
    assert layout.discover(root) == ("flat", sorted([*IMAGE_NAMES, "ILSVRC2012_val_00000001.JPEG",
                                                     "ILSVRC2012_val_00000002.JPEG"]))


def test_many_flat_images_come_back_in_name_order_whatever_the_directory_order(tmp_path):
    names = [f"ILSVRC2012_val_{(i * 7919) % 1000 + 1:08d}.JPEG" for i in range(300)]
    root = touch(tmp_path / "val", *names)
    kind, found = layout.discover(root)
    assert kind == "flat" and found == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 1001)
                                        if f"ILSVRC2012_val_{i:08d}.JPEG" in set(names)]
    assert len(found) == 300


def test_an_imagefolder_tree_keeps_the_wnid_and_every_nested_image(tmp_path):
    root = touch(tmp_path / "val",
                 f"{LAST}/z.JPEG", f"{LAST}/a.png", f"{FIRST}/b/c/deep.jpg", f"{FIRST}/b/top.jpg", f"{FIRST}/x.jpg",
                 f"{FIRST}/.hidden/no.jpg", f"{FIRST}/b/.h/no.jpg", f"{FIRST}/.no.jpg", f"{FIRST}/notes.txt",
                 f"{MIDDLE}/m.bmp", "not_a_wnid/readme.txt", ".cache/x.jpg", "README.md")
    (root / "emptydir").mkdir()
    assert layout.discover(root) == ("imagefolder", [
        f"{FIRST}/b/c/deep.jpg", f"{FIRST}/b/top.jpg", f"{FIRST}/x.jpg", f"{MIDDLE}/m.bmp", f"{LAST}/a.png",
        f"{LAST}/z.JPEG"])


def test_images_beside_folders_without_images_are_a_flat_folder(tmp_path):
    root = touch(tmp_path / "val", "b.jpg", "a.jpg", f"{FIRST}/notes.txt", "cats/readme", ".thumbs/x.jpg")
    assert layout.discover(root) == ("flat", ["a.jpg", "b.jpg"])


def test_both_layouts_in_one_folder_are_refused_naming_one_of_each(tmp_path):
    root = touch(tmp_path / "val", "z.jpg", "b.jpg", "aaa/readme.txt", f"{LAST}/a.jpg", f"{MIDDLE}/x/y.png")
    assert refused(layout.discover, root) == (
        f"{root}: holds both images (b.jpg, ...) and image sub-folders ({MIDDLE}/, ...); point --data at one layout")
    root = touch(tmp_path / "val2", "z.jpg", "cats/deep/a.jpg")   # any sub-folder with images, wnid or not
    assert refused(layout.discover, root) == (
        f"{root}: holds both images (z.jpg, ...) and image sub-folders (cats/, ...); point --data at one layout")


def test_unknown_wnid_folders_are_refused_naming_the_folder(tmp_path):
    root = touch(tmp_path / "val", f"{FIRST}/a.jpg", "cats/a.jpg", "dogs/b.jpg", "aaa/readme.txt")
    assert refused(layout.discover, root) == (
        f"{root / 'cats'}: unknown wnid 'cats': ImageFolder sub-folders must be ILSVRC2012 class wnids "
        "(n01440764, ...)")
    root = touch(tmp_path / "val2", "N01440764/a.jpg")
    assert "unknown wnid 'N01440764'" in refused(layout.discover, root)


def test_folders_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    assert refused(layout.discover, tmp_path / "empty") == f"{tmp_path / 'empty'}: contains no images (.jpeg, .jpg, .png, ...)"
    root = touch(tmp_path / "texts", "a.txt", ".b.jpg")
    assert refused(layout.discover, root) == f"{root}: contains no images (.jpeg, .jpg, .png, ...)"
    root = touch(tmp_path / "only_hidden_dirs", ".a/x.jpg")
    assert refused(layout.discover, root) == f"{root}: contains no images (.jpeg, .jpg, .png, ...)"
    root = touch(tmp_path / "subs", f"{FIRST}/a.txt", "cats/readme", f"{FIRST}/.x/a.jpg")
    assert refused(layout.discover, root) == f"{root}: contains no images in its sub-folders"


def test_what_is_not_a_folder(tmp_path, monkeypatch):
    assert refused(layout.discover, tmp_path / "nope") == f"{tmp_path / 'nope'}: no such directory or file"
    f = touch(tmp_path, "file.jpg") / "file.jpg"
    assert refused(layout.discover, f) == (
        f"{f}: not a directory, tar or parquet file (--data takes the validation image folder, a tar of it, "
        "WebDataset shards or the Hub's parquet files)")

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(layout.os, "scandir", denied)
    (tmp_path / "locked").mkdir()
    assert refused(layout.discover, tmp_path / "locked") == f"{tmp_path / 'locked'}: cannot list directory (Permission denied)"


# --- classify: a tar's member names --------------------------------------------------------------------------

def test_a_flat_tar_with_or_without_a_top_folder():
    names = ["ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000001.JPEG", "README.txt", ".x.jpg"]
    assert layout.classify(Path("v.tar"), names) == (
        "flat", ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"], "")
    top = ["ILSVRC2012_img_val/" + n for n in names] + ["ILSVRC2012_img_val/sub/notes.txt"]
    assert layout.classify(Path("v.tar"), top) == (
        "flat", ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"], "ILSVRC2012_img_val/")
    # the non-images do not count when the single top folder is looked for
    assert layout.classify(Path("v.tar"), ["val/b.jpg", "readme.txt", "other/x.txt", "val/a.jpg"]) == (
        "flat", ["a.jpg", "b.jpg"], "val/")
    assert layout.classify(Path("v.tar"), ["only.jpg"]) == ("flat", ["only.jpg"], "")


def test_an_imagefolder_tar_with_or_without_a_top_folder():
    names = [f"{LAST}/z.jpg", f"{FIRST}/b/deep.png", f"{FIRST}/a.jpg", f"{FIRST}/.h.jpg", f"{MIDDLE}/x.txt"]
    assert layout.classify(Path("v.tar"), names) == (
        "imagefolder", [f"{FIRST}/a.jpg", f"{FIRST}/b/deep.png", f"{LAST}/z.jpg"], "")
    assert layout.classify(Path("v.tar"), ["val/" + n for n in names]) == (
        "imagefolder", [f"{FIRST}/a.jpg", f"{FIRST}/b/deep.png", f"{LAST}/z.jpg"], "val/")
    # a single top folder that is a wnid is a one-class ImageFolder, not a prefix
    assert layout.classify(Path("v.tar"), [f"{MIDDLE}/b.jpg", f"{MIDDLE}/a.jpg"]) == (
        "imagefolder", [f"{MIDDLE}/a.jpg", f"{MIDDLE}/b.jpg"], "")


def test_tar_refusals_name_the_tar_and_a_member():
    where = Path("/d/v.tar")
    assert refused(layout.classify, where, ["a.txt", "b/.c.jpg", "jpg"]) == (
        "/d/v.tar: contains no images (.jpeg, .jpg, .png, ...)")
    assert refused(layout.classify, where, []) == "/d/v.tar: contains no images (.jpeg, .jpg, .png, ...)"
    assert refused(layout.classify, where, ["z.jpg", f"{LAST}/a.jpg", "b.jpg", f"{FIRST}/c.jpg"]) == (
        f"/d/v.tar: holds both images (z.jpg, ...) and image sub-folders ({LAST}/, ...); one layout per tar")
    assert refused(layout.classify, where, ["val/z.jpg", f"val/{FIRST}/x/a.jpg"]) == (
        f"/d/v.tar: holds both images (z.jpg, ...) and image sub-folders ({FIRST}/, ...); one layout per tar")
    assert refused(layout.classify, where, [f"{FIRST}/a.jpg", "dogs/x/b.jpg", "cats/c.jpg"]) == (
        "/d/v.tar: member dogs/x/b.jpg: unknown wnid 'dogs': ImageFolder sub-folders must be ILSVRC2012 class "
        "wnids (n01440764, ...)")
    # one top folder dropped, then the next level must be wnids
    assert refused(layout.classify, where, ["val/cats/c.jpg", f"val/{FIRST}/a.jpg"]) == (
        "/d/v.tar: member cats/c.jpg: unknown wnid 'cats': ImageFolder sub-folders must be ILSVRC2012 class "
        "wnids (n01440764, ...)")
    assert refused(layout.classify, where, ["a/b/c.jpg"]) == (
        "/d/v.tar: member b/c.jpg: unknown wnid 'b': ImageFolder sub-folders must be ILSVRC2012 class "
        "wnids (n01440764, ...)")


@pytest.mark.parametrize("top", ["val", ".val", None])
def test_a_tar_lists_what_its_extraction_lists(tmp_path, top):
    """The tar of an ImageFolder tree with hidden folders in it (a Finder's .AppleDouble/, a viewer's .thumbs/)
    and tarfile's own extraction of it: classify on the member names lists what discover lists on disk."""
    import tarfile

    tree = touch(tmp_path / "tree", f"{FIRST}/x.jpg", f"{FIRST}/.thumbs/x.jpg", f"{FIRST}/b/.AppleDouble/y.jpg",
                 f"{FIRST}/b/y.jpg", f"{LAST}/.z/.z/z.png", f"{LAST}/z.png", ".cache/x.jpg")
    with tarfile.open(tmp_path / "v.tar", "w") as t:
        for p in sorted(tree.rglob("*")):
            if p.is_file():
                rel = p.relative_to(tree).as_posix()
                t.add(p, arcname=rel if top is None else f"{top}/{rel}")
        t.add(tree / f"{FIRST}/x.jpg", arcname="zzz/.thumbs/x.jpg")   # beside the top folder: no image in it
    with tarfile.open(tmp_path / "v.tar") as t:
        members = t.getnames()
        t.extractall(tmp_path / "out", filter="data")
    on_disk = layout.discover(tmp_path / "out" if top is None else tmp_path / "out" / top)
    assert on_disk == ("imagefolder", [f"{FIRST}/b/y.jpg", f"{FIRST}/x.jpg", f"{LAST}/z.png"])
    kind, names, prefix = layout.classify(tmp_path / "v.tar", members)
    assert (kind, names) == on_disk
    assert prefix == ("" if top is None else f"{top}/")
