"""The release's Caffe topology and layer names, generated from our architectures.

For each of the seven models this yields the layers of the official deploy prototxt, in file order, with
the official names, and tags every parameter layer with the PyTorch module it fills. One description
serves three purposes:

* conversion: Caffe matches trained weights to layers *by name* (``Net::CopyTrainedLayersFrom``), and so
  do we — the names of parameter layers here are the names the caffemodel must contain;
* checking a user's prototxt against the architecture we will build (``tests/test_release_layout.py``
  compares every official prototxt with this, layer by layer);
* writing a release-format prototxt where the official one is not at hand (``senet-zoo demo``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models.se_bn_inception import MODULES as INCEPTION_MODULES
from ..models.se_bn_inception import REDUCTION as INCEPTION_REDUCTION
from ..models.senet import REDUCTION, SPECS, STAGE_PLANES

NUM_CLASSES = 1000


@dataclass(frozen=True)
class Layer:
    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)   # LayerParameter fields, e.g. {"convolution_param": {...}}
    module: str | None = None   # PyTorch module filled by this layer's blobs (Convolution, BatchNorm, Scale, InnerProduct)


class _Builder:
    def __init__(self) -> None:
        self.layers: list[Layer] = []

    def add(self, name: str, type_: str, bottoms, tops=None, module=None, **params) -> str:
        bottoms = (bottoms,) if isinstance(bottoms, str) else tuple(bottoms)
        tops = (name,) if tops is None else ((tops,) if isinstance(tops, str) else tuple(tops))
        self.layers.append(Layer(name, type_, bottoms, tops, params, module))
        return tops[0]

    def conv(self, name: str, bottom: str, module: str, num_output: int, kernel: int = 1, stride: int = 1,
             pad: int = 0, group: int = 1, bias: bool = False) -> str:
        p: dict[str, Any] = {"num_output": num_output, "bias_term": bias, "kernel_size": [kernel], "stride": [stride]}
        if pad:
            p["pad"] = [pad]
        if group != 1:
            p["group"] = group
        return self.add(name, "Convolution", bottom, module=module, convolution_param=p)

    def conv_bn(self, name: str, bottom: str, conv_module: str, bn_module: str, *args, relu: str | None = None,
                **kwargs) -> str:
        top = self.conv(name, bottom, conv_module, *args, **kwargs)
        self.add(f"{name}/bn", "BatchNorm", top, top, module=bn_module, batch_norm_param={"use_global_stats": True})
        self.add(f"{name}/bn/scale", "Scale", top, top, module=bn_module, scale_param={"bias_term": True})
        if relu:
            self.add(relu, "ReLU", top, top)
        return top

    def pool(self, name: str, bottom: str, method: str, kernel: int = 0, stride: int = 1, pad: int = 0,
             global_pooling: bool = False) -> str:
        p: dict[str, Any] = {"pool": method}
        if global_pooling:
            p["global_pooling"] = True
        else:
            p.update(kernel_size=kernel, stride=stride)
            if pad:
                p["pad"] = pad
        return self.add(name, "Pooling", bottom, pooling_param=p)

    def se_gate(self, prefix: str, bottom: str, module: str, channels: int, reduced: int) -> str:
        """global pool -> 1x1 down (bias) -> ReLU -> 1x1 up (bias) -> in-place Sigmoid; returns the gate blob."""
        pooled = self.pool(f"{prefix}_global_pool", bottom, "AVE", global_pooling=True)
        down = self.conv(f"{prefix}_1x1_down", pooled, f"{module}.fc1", reduced, bias=True)
        self.add(f"{down}/relu", "ReLU", down, down)
        up = self.conv(f"{prefix}_1x1_up", down, f"{module}.fc2", channels, bias=True)
        self.add(f"{prefix}_prob", "Sigmoid", up, up)
        return up

    def head(self, bottom: str, dropout: float = 0.0) -> None:
        top = self.pool("pool5/7x7_s1", bottom, "AVE", kernel=7, stride=1)
        if dropout:
            self.add("pool5/dropout_7x7_s1", "Dropout", top, top, dropout_param={"dropout_ratio": dropout})
        out = self.add("classifier", "InnerProduct", top, module="last_linear",
                       inner_product_param={"num_output": NUM_CLASSES})
        self.add("prob", "Softmax", out)


def _input(b: _Builder, size: int) -> str:
    return b.add("data", "Input", (), "data", input_param={"shape": [{"dim": [1, 3, size, size]}]})


def _residual(arch: str, size: int) -> list[Layer]:
    spec = SPECS[arch]
    b = _Builder()
    x = _input(b, size)
    if spec.stem_3x3:
        x = b.conv_bn("conv1_1/3x3_s2", x, "layer0.conv1", "layer0.bn1", 64, 3, 2, 1, relu="conv1_1/relu_3x3_s2")
        x = b.conv_bn("conv1_2/3x3", x, "layer0.conv2", "layer0.bn2", 64, 3, 1, 1, relu="conv1_2/relu_3x3")
        x = b.conv_bn("conv1_3/3x3", x, "layer0.conv3", "layer0.bn3", spec.stem_width, 3, 1, 1,
                      relu="conv1_3/relu_3x3")
    else:
        x = b.conv_bn("conv1/7x7_s2", x, "layer0.conv1", "layer0.bn1", spec.stem_width, 7, 2, 3,
                      relu="conv1/relu_7x7_s2")
    x = b.pool("pool1/3x3_s2", x, "MAX", 3, 2)
    for s, (planes, n) in enumerate(zip(STAGE_PLANES, spec.blocks)):
        w1, w2, out = spec.widths(planes)
        stride = 1 if s == 0 else 2
        s1, s3 = (stride, 1) if spec.stride_in_1x1 else (1, stride)
        for i in range(n):
            p, m = f"conv{s + 2}_{i + 1}", f"layer{s + 1}.{i}"
            first = i == 0
            y = b.conv_bn(f"{p}_1x1_reduce", x, f"{m}.conv1", f"{m}.bn1", w1, 1, s1 if first else 1,
                          relu=f"{p}_1x1_reduce/relu")
            y = b.conv_bn(f"{p}_3x3", y, f"{m}.conv2", f"{m}.bn2", w2, 3, s3 if first else 1, 1,
                          group=spec.groups, relu=f"{p}_3x3/relu")
            y = b.conv_bn(f"{p}_1x1_increase", y, f"{m}.conv3", f"{m}.bn3", out, 1)
            gate = b.se_gate(p, y, f"{m}.se_module", out, out // REDUCTION)
            shortcut = x
            if first:
                k = 1 if s == 0 else spec.proj_kernel
                shortcut = b.conv_bn(f"{p}_1x1_proj", x, f"{m}.downsample.0", f"{m}.downsample.1", out, k,
                                     stride, k // 2)
            x = b.add(p, "Axpy", (gate, y, shortcut))
            b.add(f"{p}/relu", "ReLU", x, x)
    b.head(x, dropout=spec.drop_rate)
    return b.layers


def _inception(size: int) -> list[Layer]:
    b = _Builder()
    x = _input(b, size)
    x = b.conv_bn("conv1/7x7_s2", x, "conv1.conv", "conv1.bn", 64, 7, 2, 3, relu="conv1/relu_7x7")
    x = b.pool("pool1/3x3_s2", x, "MAX", 3, 2)
    x = b.conv_bn("conv2/3x3_reduce", x, "conv2_reduce.conv", "conv2_reduce.bn", 64, 1,
                  relu="conv2/relu_3x3_reduce")
    x = b.conv_bn("conv2/3x3", x, "conv2.conv", "conv2.bn", 192, 3, 1, 1, relu="conv2/relu_3x3")
    x = b.pool("pool2/3x3_s2", x, "MAX", 3, 2)
    in_ch = 192
    for name, spec in INCEPTION_MODULES.items():
        s = spec.stride

        def branch(suffix: str, bottom: str, n: int, kernel: int = 1, stride: int = 1) -> str:
            return b.conv_bn(f"{name}/{suffix}", bottom, f"{name}.conv_{suffix}.conv", f"{name}.conv_{suffix}.bn",
                             n, kernel, stride, kernel // 2, relu=f"{name}/relu_{suffix}")

        outs = []
        if spec.c1x1:
            outs.append(branch("1x1", x, spec.c1x1))
        y = branch("3x3_reduce", x, spec.c3x3_reduce)
        outs.append(branch("3x3", y, spec.c3x3, 3, s))
        y = branch("double3x3_reduce", x, spec.cdouble_reduce)
        y = branch("double3x3a", y, spec.cdouble, 3)
        outs.append(branch("double3x3b", y, spec.cdouble, 3, s))
        if spec.pool == "max_s2":
            outs.append(b.pool(f"{name}/pool/3x3_s2", x, "MAX", 3, 2))
        else:
            y = b.pool(f"{name}/pool", x, "AVE" if spec.pool == "avg" else "MAX", 3, 1, 1)
            outs.append(branch("pool_proj", y, spec.pool_proj))
        cat = b.add(f"{name}/concat", "Concat", outs)
        out_ch = spec.c1x1 + spec.c3x3 + spec.cdouble + (spec.pool_proj or in_ch)
        gate = b.se_gate(name, cat, f"{name}.se_module", out_ch, out_ch // INCEPTION_REDUCTION)
        gate = b.add(f"{name}_prob_reshape", "Reshape", gate, reshape_param={"shape": {"dim": [0, 0]}})
        x = b.add(f"{name}_scale", "Scale", (cat, gate), f"{name}/output",
                  scale_param={"axis": 0, "bias_term": False})
        in_ch = out_ch
    b.head(x)
    return b.layers


def release_layers(arch: str, size: int = 224) -> list[Layer]:
    """The official deploy prototxt of ``arch`` as a list of layers (input 1x3x``size``x``size``)."""
    if arch == "se_bn_inception":
        return _inception(size)
    if arch in SPECS:
        return _residual(arch, size)
    raise KeyError(arch)


def parameter_layers(arch: str) -> list[Layer]:
    """The layers whose blobs the caffemodel must provide, in prototxt order."""
    return [layer for layer in release_layers(arch) if layer.module is not None]


def net_parameter(arch: str, size: int = 224, name: str | None = None):
    """The release layout as a ``caffe.NetParameter`` message (no blobs)."""
    from google.protobuf import json_format

    from . import caffe_pb2

    layers = [
        {"name": l.name, "type": l.type, "bottom": list(l.bottoms), "top": list(l.tops), **l.params}
        for l in release_layers(arch, size)
    ]
    return json_format.ParseDict({"name": name or arch, "layer": layers}, caffe_pb2.NetParameter())


def write_release_prototxt(arch: str, path: str | Path, size: int = 224) -> Path:
    """Write the release's deploy prototxt of ``arch`` (for the demo, or when the official file is absent)."""
    from google.protobuf import text_format

    from ..files import atomic_write_text

    text = text_format.MessageToString(net_parameter(arch, size))
    header = f"# {arch}: release layout written by senet-zoo\n# mean_value: 104, 117, 123\n"
    atomic_write_text(path, header + text)
    return Path(path)
