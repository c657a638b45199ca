"""Write the images of an evaluation set in the other forms ``--data`` reads: a tar, WebDataset shards, parquet.

For the tests and ``benchmarks/validate.py``, which build every form from one JPEG set, and for users who want
to compare sources on their own images. The forms follow the originals: ``tar`` is what ``tar cf`` writes of
the folder (optionally under one top folder, as ``ILSVRC2012_img_val.tar`` unpacks to one); shards are
``KEY.jpg`` + ``KEY.cls`` (+ ``KEY.json`` with the ``filename``) as timm/imagenet-1k-wds; parquet is the Hub's
``image`` {bytes, path} + ``label`` in row groups of 100 rows, as ``datasets`` writes image datasets.
"""
from __future__ import annotations

import io
import json
import math
import os
import tarfile
from pathlib import Path

from ...files import atomic_path


def write_tar(root: Path, names: list[str], dest: Path, top: str = "") -> Path:
    """``root``'s files ``names`` as one tar (members ``top/name``)."""
    with atomic_path(dest) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tf:
            for n in names:
                tf.add(os.path.join(root, n), arcname=f"{top.rstrip('/')}/{n}" if top else n, recursive=False)
    return dest


def _add(tf: tarfile.TarFile, name: str, payload: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(payload), 0o644, 0
    tf.addfile(ti, io.BytesIO(payload))


def write_shards(root: Path, names: list[str], labels: list[int], dest: Path, shards: int,
                 pattern: str = "val-{:06d}.tar", with_json: bool = True) -> list[Path]:
    """WebDataset shards of ``names`` (consecutive runs of images per shard), keyed by the file stem."""
    per = math.ceil(len(names) / shards)
    out = []
    dest.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        path = dest / pattern.format(s)
        with atomic_path(path) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tf:
                for n, label in zip(names[s * per:(s + 1) * per], labels[s * per:(s + 1) * per]):
                    base = n.rsplit("/", 1)[-1]
                    key = base.rsplit(".", 1)[0]
                    _add(tf, f"{key}.jpg", Path(root, n).read_bytes())
                    _add(tf, f"{key}.cls", str(int(label)).encode())
                    if with_json:
                        _add(tf, f"{key}.json", json.dumps({"filename": base, "label": int(label)}).encode())
        out.append(path)
    return out


def write_parquet(root: Path, names: list[str], labels: list[int], dest: Path, files: int = 1,
                  row_group_size: int = 100, pattern: str = "validation-{:05d}-of-{:05d}.parquet") -> list[Path]:
    """The Hub's image-classification parquet layout: ``image`` {bytes, path}, ``label`` (int64)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    per = math.ceil(len(names) / files)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for f in range(files):
        chunk = list(zip(names[f * per:(f + 1) * per], labels[f * per:(f + 1) * per]))
        table = pa.table({
            "image": pa.array([{"bytes": Path(root, n).read_bytes(), "path": n.rsplit("/", 1)[-1]} for n, _ in chunk],
                              type=image_type),
            "label": pa.array([int(label) for _, label in chunk], type=pa.int64()),
        })
        path = dest / pattern.format(f, files)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, row_group_size=row_group_size)
        out.append(path)
    return out
