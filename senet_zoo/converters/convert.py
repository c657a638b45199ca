"""Caffe release files -> ``model.safetensors`` + ``config.json``.

Weights are matched to layers by name, as Caffe itself does (``Net::CopyTrainedLayersFrom``), and only the
caffemodel's *parameter* layers take part: the released SENet-154 caffemodel names its parameter-free layers
differently from its prototxt, which therefore must not matter. Every PyTorch tensor comes from a
caffemodel blob and every caffemodel blob is used; anything missing or left over is an error naming it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import classes, registry
from ..errors import SenetZooError
from ..files import atomic_dir, sha256_file
from ..models.config import CLASS_ORDER, hub_config
from . import caffe_layers
from .release_layout import Layer, parameter_layers, release_layers

# The version of the bytes ``convert`` writes: it goes up whenever the same caffemodel would give a different
# model.safetensors (a validation record binds to its sha256) or a config.json whose input contract differs
# (mean, std, sizes, class order), and only then. It is stored in model.safetensors, so a purely descriptive
# addition to config.json (timm's label_descriptions) does not bump it: that would change the weights'
# bytes, and void their records, for weights that did not change.
# 0.2.0: a fixed safetensors header (sorted metadata keys), Caffe's exact blob rules.
CONVERTER_VERSION = "0.2.0"


@dataclass
class ConvertResult:
    model: str
    output: Path
    source_sha256: str
    num_tensors: int
    num_parameters: int


def _conv_param(layer_proto) -> dict[str, int | bool]:
    p = layer_proto.convolution_param

    def first(values, default):
        return int(values[0]) if len(values) else default

    kernel = int(p.kernel_h) if p.HasField("kernel_h") else first(p.kernel_size, 1)
    stride = int(p.stride_h) if p.HasField("stride_h") else first(p.stride, 1)
    pad = int(p.pad_h) if p.HasField("pad_h") else first(p.pad, 0)
    return {"num_output": int(p.num_output), "kernel": kernel, "stride": stride, "pad": pad,
            "group": int(p.group), "bias_term": bool(p.bias_term)}


def _expected_conv(layer: Layer) -> dict[str, int | bool]:
    p = layer.params["convolution_param"]
    return {"num_output": p["num_output"], "kernel": p["kernel_size"][0], "stride": p["stride"][0],
            "pad": p.get("pad", [0])[0], "group": p.get("group", 1), "bias_term": p["bias_term"]}


def _affine_param(kind: str, layer_proto, expected: Layer | None = None) -> dict[str, Any]:
    """The InnerProduct / Scale fields that decide its blobs, from a prototxt layer or from our layout."""
    if kind == "InnerProduct":
        if expected is not None:
            p = expected.params["inner_product_param"]
            return {"num_output": p["num_output"], "bias_term": p.get("bias_term", True), "transpose": False,
                    "axis": 1}
        p = layer_proto.inner_product_param
        return {"num_output": int(p.num_output), "bias_term": bool(p.bias_term), "transpose": bool(p.transpose),
                "axis": int(p.axis)}
    if expected is not None:
        p = expected.params["scale_param"]
        return {"bias_term": p.get("bias_term", False), "axis": p.get("axis", 1), "num_axes": 1}
    p = layer_proto.scale_param
    return {"bias_term": bool(p.bias_term), "axis": int(p.axis), "num_axes": int(p.num_axes)}


def _pool_param(layer_proto) -> dict[str, Any]:
    p = layer_proto.pooling_param
    if p.global_pooling:
        return {"pool": p.PoolMethod.Name(p.pool), "global": True}
    kernel = int(p.kernel_h) if p.HasField("kernel_h") else int(p.kernel_size)
    stride = int(p.stride_h) if p.HasField("stride_h") else int(p.stride)
    pad = int(p.pad_h) if p.HasField("pad_h") else int(p.pad)
    return {"pool": p.PoolMethod.Name(p.pool), "kernel": kernel, "stride": stride, "pad": pad}


def _expected_pool(layer: Layer) -> dict[str, Any]:
    p = layer.params["pooling_param"]
    if p.get("global_pooling"):
        return {"pool": p["pool"], "global": True}
    return {"pool": p["pool"], "kernel": p["kernel_size"], "stride": p["stride"], "pad": p.get("pad", 0)}


def check_topology(net, ckpt: registry.Checkpoint) -> None:
    """Refuse a prototxt that does not describe the architecture we build (layer types, parameter layers'
    hyper-parameters by name, and the pooling layers in order)."""
    for layer in net.layers:
        if layer.type not in caffe_layers.KNOWN_TYPES:
            raise SenetZooError(net.source, f"layer '{layer.name}' has type '{layer.type}', which is not part of "
                                f"the release's deploy networks ({', '.join(sorted(caffe_layers.KNOWN_TYPES))})")
    by_name = {layer.name: layer for layer in net.layers}
    for expected in parameter_layers(ckpt.architecture):
        layer = by_name.get(expected.name)
        if layer is None:
            raise SenetZooError(net.source, f"has no layer '{expected.name}', which {ckpt.display_name} needs "
                                "(is this the prototxt of another model?)")
        if layer.type != expected.type:
            raise SenetZooError(net.source, f"layer '{expected.name}' is a {layer.type}, {ckpt.display_name} "
                                f"has a {expected.type} there")
        if expected.type == "Convolution":
            got, want = _conv_param(layer.proto), _expected_conv(expected)
            if got != want:
                raise SenetZooError(net.source, f"layer '{expected.name}': {got} differs from {ckpt.display_name}'s "
                                    f"{want}")
        elif expected.type in ("InnerProduct", "Scale"):
            # the blob count Caffe builds this layer with (bias_term) must be the one our module has
            got, want = _affine_param(expected.type, layer.proto), _affine_param(expected.type, None, expected)
            if got != want:
                raise SenetZooError(net.source, f"layer '{expected.name}': {got} differs from {ckpt.display_name}'s "
                                    f"{want}")
    pools = [layer for layer in net.layers if layer.type == "Pooling"]
    want_pools = [layer for layer in release_layers(ckpt.architecture) if layer.type == "Pooling"]
    if len(pools) != len(want_pools):
        raise SenetZooError(net.source, f"has {len(pools)} Pooling layers, {ckpt.display_name} has {len(want_pools)}")
    for layer, expected in zip(pools, want_pools):
        got, want = _pool_param(layer.proto), _expected_pool(expected)
        if got != want:
            raise SenetZooError(net.source, f"Pooling layer '{layer.name}': {got} differs from {want}")
        if layer.proto.pooling_param.HasField("round_mode") and layer.proto.pooling_param.round_mode != 0:
            raise SenetZooError(net.source, f"Pooling layer '{layer.name}' rounds down (round_mode: FLOOR); the "
                                "release's networks round up")


def _bn_eps(name: str, *nets) -> float:
    """eps of a BatchNorm layer: the deploy prototxt decides (Caffe builds the net from it), then the
    caffemodel's own layer definition, then Caffe's default."""
    for net in nets:
        if net is None:
            continue
        layer = next((l for l in net.layers if l.name == name and l.proto is not None), None)
        if layer is not None:
            return float(layer.proto.batch_norm_param.eps)
    return caffe_layers.CAFFE_BN_EPS


def _describe_blobs(blobs: list[np.ndarray]) -> str:
    return ", ".join(_fmt(b.shape) for b in blobs) or "none"


def _guess_model(weights) -> str | None:
    """Which registry model's parameter-layer names the caffemodel matches best (for error messages)."""
    names = {layer.name for layer in weights.param_layers()}
    best, best_score = None, 0.0
    for ckpt_name in registry.names():
        wanted = {l.name for l in parameter_layers(registry.get(ckpt_name).architecture)}
        score = len(names & wanted) / max(len(names | wanted), 1)
        if score > best_score:
            best, best_score = ckpt_name, score
    return best if best_score > 0.9 else None


def param_layers_by_name(weights) -> dict:
    """The caffemodel's parameter layers by name. Two of one name are refused: Caffe would copy both in turn
    and keep the last one's blobs, so the file does not say which weights it holds."""
    layers: dict = {}
    for layer in weights.param_layers():
        if layer.name in layers:
            raise SenetZooError(weights.source, f"has two parameter layers named '{layer.name}' (blobs "
                                f"{_describe_blobs(layers[layer.name].blobs)} and {_describe_blobs(layer.blobs)}); "
                                "which weights it holds is ambiguous")
        layers[layer.name] = layer
    return layers


def map_weights(weights, ckpt: registry.Checkpoint, prototxt_net=None) -> dict[str, np.ndarray]:
    """The PyTorch state dict of ``ckpt``'s architecture from a caffemodel's parameter layers."""
    from ..models import build

    import torch

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected_shapes = {k: tuple(v.shape) for k, v in build(ckpt.architecture).state_dict().items()}

    def hint() -> str:
        guess = _guess_model(weights)
        return f"; it looks like {registry.get(guess).display_name}" if guess and guess != ckpt.name else ""

    return map_layers(weights, parameter_layers(ckpt.architecture), expected_shapes, ckpt.display_name,
                      prototxt_net, row_order=classes.sorted_to_devkit(), missing_hint=hint)


def map_layers(weights, wanted: list[Layer], expected_shapes: dict[str, tuple[int, ...]], model: str,
               prototxt_net=None, row_order: np.ndarray | None = None,
               missing_hint: Callable[[], str] = lambda: "") -> dict[str, np.ndarray]:
    """The state dict for the parameter layers ``wanted`` (with the PyTorch ``expected_shapes``), by Caffe's
    rules: matched by name, every blob's count and shape checked before anything is computed."""
    source = weights.source
    available = param_layers_by_name(weights)
    missing = [l.name for l in wanted if l.name not in available]
    if missing:
        raise SenetZooError(source, f"is not a {model} caffemodel: {len(missing)} of {len(wanted)} "
                            f"parameter layers are missing, first '{missing[0]}'{missing_hint()}")
    extra = sorted(set(available) - {l.name for l in wanted})
    if extra:
        raise SenetZooError(source, f"layer '{extra[0]}' (blobs {_describe_blobs(available[extra[0]].blobs)}) is not "
                            f"part of {model}" + (f", nor are {len(extra) - 1} more" if len(extra) > 1 else ""))

    for layer in wanted:  # everything is checked before anything is computed
        caffe = available[layer.name]
        if caffe.proto is not None and caffe.type != layer.type:
            raise SenetZooError(source, f"layer '{layer.name}' is a {caffe.type}, {model} has a "
                                f"{layer.type} there")
        check_blobs(caffe, caffe_blob_shapes(layer, expected_shapes), model, source)
    first_conv = next(l.name for l in wanted if l.type == "Convolution")
    state: dict[str, np.ndarray] = {}
    bn_pending: dict[str, Layer] = {}
    for layer in wanted:
        caffe = available[layer.name]
        if layer.type == "Convolution":
            tensors = caffe_layers.convolution(caffe.blobs, reverse_input_channels=layer.name == first_conv)
        elif layer.type == "InnerProduct":
            tensors = caffe_layers.inner_product(caffe.blobs, row_order=row_order)
        elif layer.type == "BatchNorm":
            bn_pending[layer.module] = layer
            continue
        else:  # the Scale that follows a BatchNorm: one nn.BatchNorm2d together
            bn = bn_pending.pop(layer.module)
            tensors = caffe_layers.fold_batchnorm(available[bn.name].blobs, _bn_eps(bn.name, prototxt_net, weights),
                                                  caffe.blobs)
        for key, value in tensors.items():
            full = f"{layer.module}.{key}"
            want = expected_shapes.get(full)
            if want is None:
                raise SenetZooError(source, f"layer '{layer.name}' has a blob for {full}, which "
                                    f"{model} lacks")
            if tuple(value.shape) != want:
                raise SenetZooError(source, f"layer '{layer.name}' has blobs {_describe_blobs(caffe.blobs)}; "
                                    f"{model} needs {'x'.join(map(str, want))} for {full}")
            state[full] = value
    missing_tensors = sorted(set(expected_shapes) - set(state))
    if missing_tensors:  # a programming error in the layout, never a user error
        raise AssertionError(f"no Caffe blob for {missing_tensors[:3]}")
    return state


def caffe_blob_shapes(layer: Layer, torch_shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every blob Caffe's own layer holds for ``layer`` of the architecture we build: exactly
    what ``Net::CopyTrainedLayersFrom`` demands of a caffemodel (bias blobs only with ``bias_term``)."""
    def shape(key: str) -> tuple[int, ...]:
        return torch_shapes[f"{layer.module}.{key}"]

    if layer.type == "Convolution":
        bias = layer.params["convolution_param"]["bias_term"]
        return [("weight", shape("weight"))] + ([("bias", shape("bias"))] if bias else [])
    if layer.type == "InnerProduct":
        bias = layer.params["inner_product_param"].get("bias_term", True)
        return [("weight", shape("weight"))] + ([("bias", shape("bias"))] if bias else [])
    channels = shape("running_mean")
    if layer.type == "BatchNorm":
        return [("mean", channels), ("variance", channels), ("scale factor", (1,))]
    bias = layer.params["scale_param"].get("bias_term", False)
    return [("scale", channels)] + ([("bias", channels)] if bias else [])


def shape_equals(blob: np.ndarray, legacy: bool, target: tuple[int, ...]) -> bool:
    """Caffe's Blob::ShapeEquals: a blob stored with the deprecated num/channels/height/width fields matches a
    target of at most 4 axes padded with leading 1s (a bias saved as 1x1x1xN); any other shape must be equal."""
    if legacy:
        return len(target) <= 4 and tuple(blob.shape) == (1,) * (4 - len(target)) + tuple(target)
    return tuple(blob.shape) == tuple(target)


def _fmt(shape) -> str:
    return "x".join(map(str, shape)) if len(shape) else "scalar"


def check_blobs(caffe, wanted: list[tuple[str, tuple[int, ...]]], model: str, source) -> None:
    """Refuse a layer whose blob count or shapes differ from Caffe's (no zero fill, no truncation, no reshape)."""
    if len(caffe.blobs) != len(wanted):
        need = ", ".join(f"{what} {_fmt(shape)}" for what, shape in wanted)
        raise SenetZooError(source, f"layer '{caffe.name}' has {len(caffe.blobs)} blobs "
                            f"({_describe_blobs(caffe.blobs)}), {model}'s needs {len(wanted)} ({need}); Caffe "
                            "refuses to load such a file")
    for j, (blob, (what, shape)) in enumerate(zip(caffe.blobs, wanted)):
        if not shape_equals(blob, caffe.legacy_shape(j), shape):
            raise SenetZooError(source, f"layer '{caffe.name}' blob {j} ({what}) has shape {_fmt(blob.shape)}, "
                                f"{model} needs {_fmt(shape)}; Caffe refuses to load such a file")


def check_release_hash(ckpt: registry.Checkpoint, caffemodel: Path, sha256: str, allow_unknown_hash: bool) -> None:
    if ckpt.caffemodel_sha256 is None or sha256 == ckpt.caffemodel_sha256 or allow_unknown_hash:
        return
    raise SenetZooError(caffemodel, f"sha256 {sha256[:16]}… is not the released {ckpt.caffemodel} "
                        f"({ckpt.caffemodel_sha256[:16]}…); pass --allow-unknown-hash to convert it anyway")


def find_prototxt(ckpt: registry.Checkpoint, caffemodel: Path) -> Path | None:
    """The release's prototxt beside the caffemodel, if the user keeps the release's file names."""
    candidate = caffemodel.parent / ckpt.prototxt
    return candidate if candidate.is_file() else None


OUTPUT_FILES = frozenset({"model.safetensors", "config.json"})


def _check_output_folder(output: Path) -> None:
    """The output folder is replaced as a whole: only a new, empty or earlier converted folder may be, in a
    folder we may write to (checked before any work is done)."""
    if output.is_symlink():
        target = os.readlink(output)
        state = "" if output.exists() else ", which does not exist"
        raise SenetZooError(output, f"is a symbolic link (to {target}{state}); give the folder itself")
    if output.exists():
        if not output.is_dir():
            raise SenetZooError(output, "exists and is not a folder")
        others = sorted(p.name for p in output.iterdir() if p.name not in OUTPUT_FILES)
        if others:
            raise SenetZooError(output, f"exists and holds other files ({others[0]}…); give a new or empty folder")
    parent = output.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SenetZooError(parent, "is not a folder: cannot create the output below it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SenetZooError(parent, "is not writable: cannot write the output here")


def convert(name: str, caffemodel: str | Path, output: str | Path, prototxt: str | Path | None = None,
            allow_unknown_hash: bool = False, log: Callable[[str], None] = lambda s: None) -> ConvertResult:
    from . import caffe_io
    from .safetensors_out import write_safetensors

    ckpt = registry.get(name)
    caffemodel, output = Path(caffemodel), Path(output)
    if not caffemodel.is_file():
        raise SenetZooError(caffemodel, "no such file")
    prototxt = Path(prototxt) if prototxt else find_prototxt(ckpt, caffemodel)
    if prototxt is not None and not prototxt.is_file():
        raise SenetZooError(prototxt, "no such file")
    _check_output_folder(output)
    caffe_io.probe_weights(caffemodel)  # what the file is comes before any advice about its hash
    source_sha256 = sha256_file(caffemodel)
    check_release_hash(ckpt, caffemodel, source_sha256, allow_unknown_hash)
    prototxt_net = None
    if prototxt is not None:
        prototxt_net = caffe_io.read_prototxt(prototxt)
        check_topology(prototxt_net, ckpt)
        log(f"{prototxt}: topology matches {ckpt.display_name}")
    weights = caffe_io.read_weights(caffemodel)
    log(f"{caffemodel}: {len(weights.param_layers())} parameter layers, sha256 {source_sha256}")
    state = map_weights(weights, ckpt, prototxt_net)
    del weights
    num_features = state["last_linear.weight"].shape[1]
    config = hub_config(ckpt, num_features, caffemodel.name, source_sha256, CONVERTER_VERSION)
    metadata = {"format": "pt", "model": ckpt.name, "source_file": caffemodel.name, "source_sha256": source_sha256,
                "converter_version": CONVERTER_VERSION, "class_order": CLASS_ORDER}
    try:
        with atomic_dir(output) as tmp:
            write_safetensors(state, tmp / "model.safetensors", metadata)
            # bytes, not text: no newline translation, so config.json is the same file everywhere
            (tmp / "config.json").write_bytes((json.dumps(config, indent=2) + "\n").encode("utf-8"))
    except OSError as e:  # a full disk or a folder that went away mid-write: nothing partial is left
        raise SenetZooError(output, f"cannot write the converted model: {e.strerror or e}") from None
    num_parameters = sum(int(v.size) for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                                  "num_batches_tracked")))
    return ConvertResult(ckpt.name, output, source_sha256, len(state), num_parameters)
