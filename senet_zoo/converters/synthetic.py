"""Seeded synthetic weights in the release's exact topology and blob shapes, calibrated to behave like a net.

``synthesize(net, seed)`` takes a prototxt net and returns a copy whose parameter layers carry blobs with
exactly Caffe's shapes:

* Convolution (out, in/group, kh, kw) [+ bias (out,)]
* BatchNorm (mean·s (C,), var·s (C,), s (1,)): the scale factor s is drawn log-uniformly from [0.3, 0.5] ∪
  [2, 50], different per layer, so a converter that forgets to divide by it is far off
* Scale gamma (C,) [+ beta (C,)]
* InnerProduct (num_output, in_features) [+ bias (num_output,)]

Random weights alone would not make a useful test net: through SENet-154's 50 residual blocks activations
would explode or vanish, SE gates would saturate at 0 or 1 (hiding a wrong gate), and every input would get
the same top-1 class. So the weights are calibrated on data: a small interpreter of the Caffe graph (torch,
Caffe semantics) runs a batch of four seeded smooth images (Caffe's input range) layer by layer in file
order, and each layer's blobs are set from what it sees:

* Convolution weights: zero-mean uniform, He-scaled (sqrt(2 / fan_in)); uniform because it is three times
  faster to draw than normal, and SENet-154 has 115 M;
* BatchNorm mean and variance: its input's batch statistics, so every BatchNorm output is of order 1;
* the Scale after it: gamma ~ U(0.5, 1.5), beta ~ U(0.3, 1.0). A positive beta keeps most ReLUs in their
  linear part: with centred betas, SE-BN-Inception (no residuals) turns per-image contrast differences into
  channel-mean offsets that grow layer by layer, and some inputs reach logit spreads of 100+. The Scale
  that ends a residual branch (the Axpy's ``x``) gets gamma ~ U(0.2, 0.6), beta ~ U(-0.2, 0.2), so the
  shortcut stream grows slowly (root-mean-square below 2 after SENet-154's 36 blocks of stage 4);
* a Convolution or InnerProduct that no BatchNorm reads (the SE squeeze/excite convolutions, the
  classifier) is scaled and shifted on the batch. SE convolutions as a whole: one mean and one spread over
  all channels and images, spread 1, bias offsets U(-0.5, 0.5), so sigmoid inputs are of order 1 (gates
  mostly 0.1-0.9); standardizing each channel over four images would amplify small input differences,
  compounding over the blocks. The classifier per class: the batch mean goes into the bias (plus
  U(-1, 1)) and the input-dependent part gets spread 2.5, so logits spread by about 3 across classes and
  different inputs win different classes.

Deterministic for a given seed (on one machine and torch thread count: the calibration forward pass is
float32). The interpreter is exposed as :func:`forward` (Caffe semantics, used for calibration and tests).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SenetZooError
from .caffe_io import CaffeLayer, CaffeNet
from .caffe_layers import pooling_output_size
from .opencv_reference import caffe_input

__all__ = ["synthesize", "forward", "calibration_images", "BN_SCALE_FACTOR_RANGES"]

# log-uniform over the union; never near 1
BN_SCALE_FACTOR_RANGES = ((0.3, 0.5), (2.0, 50.0))
NUM_CALIBRATION_IMAGES = 4
_CALIBRATION_SEED_OFFSET = 1_000_003  # calibration images are not the test inputs of small seeds
# Scale after BatchNorm: gamma, beta; at the end of a residual branch (the Axpy's x) smaller and centred
_GAMMA, _BETA = (0.5, 1.5), (0.3, 1.0)
_GAMMA_BRANCH_END, _BETA_BRANCH_END = (0.2, 0.6), (-0.2, 0.2)
# (spread of the input-dependent part, half-width of the random bias offset) by what reads the output
_TARGETS = {"Sigmoid": (1.0, 0.5), "ReLU": (1.0, 0.5), "logits": (2.5, 1.0), "other": (1.0, 0.5)}


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def calibration_images(n: int, seed: int, size: int | tuple[int, int] = 224) -> np.ndarray:
    """Seeded smooth random BGR uint8 images (N, H, W, 3): coarse colour fields plus finer texture."""
    height, width = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    images = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        cells = int(rng.integers(3, 12)), int(rng.integers(3, 12))
        coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, *cells)).astype(np.float32))
        fine = torch.from_numpy(rng.normal(0, 25, (1, 3, max(height // 4, 1), max(width // 4, 1))).astype(np.float32))
        image = (F.interpolate(coarse, (height, width), mode="bicubic", align_corners=False)
                 + F.interpolate(fine, (height, width), mode="bilinear", align_corners=False))
        images[i] = image[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
    return images


# ---------------------------------------------------------------------------------------------------------------
# Layer parameters (BVLC caffe.proto semantics)


def _pair(repeated, h: int | None, w: int | None, default: int, what: str, layer: CaffeLayer) -> tuple[int, int]:
    if h is not None or w is not None:
        return int(h if h is not None else default), int(w if w is not None else default)
    values = [int(v) for v in repeated]
    if not values:
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise SenetZooError(None, f"layer '{layer.name}': {len(values)} {what} values for a 2-d convolution")


def _opt(msg, name: str):
    return getattr(msg, name) if msg.HasField(name) else None


def _conv_geometry(layer: CaffeLayer):
    p = layer.proto.convolution_param
    kernel = _pair(p.kernel_size, _opt(p, "kernel_h"), _opt(p, "kernel_w"), 0, "kernel_size", layer)
    stride = _pair(p.stride, _opt(p, "stride_h"), _opt(p, "stride_w"), 1, "stride", layer)
    pad = _pair(p.pad, _opt(p, "pad_h"), _opt(p, "pad_w"), 0, "pad", layer)
    dilation = _pair(p.dilation, None, None, 1, "dilation", layer)
    if min(kernel) <= 0:
        raise SenetZooError(None, f"layer '{layer.name}': convolution without a kernel size")
    return kernel, stride, pad, dilation, int(p.group)


def _pool_geometry(layer: CaffeLayer, height: int, width: int):
    p = layer.proto.pooling_param
    if p.global_pooling:
        return (height, width), (1, 1), (0, 0)
    kernel = (p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (p.kernel_size, p.kernel_size)
    stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
    pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
    return tuple(map(int, kernel)), tuple(map(int, stride)), tuple(map(int, pad))


# ---------------------------------------------------------------------------------------------------------------
# The interpreter


def _axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


def _run_layer(layer: CaffeLayer, inputs: list[torch.Tensor], blobs: list[torch.Tensor]) -> torch.Tensor:
    kind, p = layer.type, layer.proto
    x = inputs[0]
    if kind == "Convolution":
        kernel, stride, pad, dilation, group = _conv_geometry(layer)
        if kernel == (1, 1) and pad == (0, 0) and group == 1 and x.shape[2:] == (1, 1):
            # the SE squeeze/excite convolutions: a plain matrix product (oneDNN's per-call setup for a
            # 1x1 map costs far more than the arithmetic)
            y = x.reshape(x.shape[0], -1) @ blobs[0].reshape(blobs[0].shape[0], -1).T
            y = y if len(blobs) < 2 else y + blobs[1].reshape(-1)
            return y.reshape(*y.shape, 1, 1)
        return F.conv2d(x, blobs[0], blobs[1] if len(blobs) > 1 else None, stride, pad, dilation, group)
    if kind == "BatchNorm":
        s = float(blobs[2].reshape(-1)[0])
        factor = 0.0 if s == 0 else 1.0 / s  # Caffe's rule: s = 0 means factor 0
        mean, var = blobs[0].reshape(-1) * factor, blobs[1].reshape(-1) * factor
        return F.batch_norm(x, mean, var, None, None, False, 0.0, p.batch_norm_param.eps)
    if kind == "Scale":
        sp = p.scale_param
        axis = _axis(sp.axis, x.ndim)
        if len(inputs) > 1:
            scale = inputs[1]
            bias = None
        else:
            scale = blobs[0]
            bias = blobs[1] if len(blobs) > 1 else None
        shape = tuple(scale.shape)
        if tuple(x.shape[axis:axis + len(shape)]) != shape:
            raise SenetZooError(None, f"layer '{layer.name}': scale of shape {shape} does not fit "
                                      f"{tuple(x.shape)} at axis {axis}")
        view = (1,) * axis + shape + (1,) * (x.ndim - axis - len(shape))
        if bias is None:
            return x * scale.reshape(view)
        return torch.addcmul(bias.reshape(view), x, scale.reshape(view))
    if kind == "ReLU":
        slope = p.relu_param.negative_slope
        inplace = layer.tops == layer.bottoms  # Caffe overwrites the blob too
        return F.relu(x, inplace=inplace) if slope == 0 else F.leaky_relu(x, slope, inplace=inplace)
    if kind == "Sigmoid":
        return torch.sigmoid(x)
    if kind == "Dropout":  # the identity at test time; Caffe copies unless in place
        return x if layer.tops == layer.bottoms else x.clone()
    if kind == "Axpy":
        a, x, y = inputs
        return a.reshape(a.shape[0], a.shape[1], *([1] * (x.ndim - 2))) * x + y
    if kind == "Concat":
        cp = p.concat_param
        axis = cp.axis if cp.HasField("axis") or not cp.HasField("concat_dim") else cp.concat_dim
        return torch.cat(inputs, _axis(axis, x.ndim))
    if kind == "Softmax":
        return torch.softmax(x, _axis(p.softmax_param.axis, x.ndim))
    if kind == "InnerProduct":
        ip = p.inner_product_param
        axis = _axis(ip.axis, x.ndim)
        flat = x.reshape(*x.shape[:axis], -1)
        weight = blobs[0].reshape(blobs[0].shape[-2], blobs[0].shape[-1])
        y = flat @ (weight if ip.transpose else weight.T)
        return y + blobs[1].reshape(-1) if len(blobs) > 1 else y
    if kind == "Reshape":
        return x.reshape(_reshape(layer, tuple(x.shape)))
    if kind == "Pooling":
        return _pool(layer, x)
    raise SenetZooError(None, f"layer '{layer.name}': type '{kind}' is not supported by the interpreter")


def _reshape(layer: CaffeLayer, shape: tuple[int, ...]) -> tuple[int, ...]:
    rp = layer.proto.reshape_param
    start = _axis(rp.axis, len(shape) + 1) if rp.axis < 0 else rp.axis
    end = len(shape) if rp.num_axes == -1 else start + rp.num_axes
    dims = []
    for i, d in enumerate(rp.shape.dim):
        dims.append(shape[start + i] if d == 0 else int(d))
    new = list(shape[:start]) + dims + list(shape[end:])
    if new.count(-1) == 1:
        known = math.prod(d for d in new if d != -1)
        new[new.index(-1)] = math.prod(shape) // known
    if math.prod(new) != math.prod(shape):
        raise SenetZooError(None, f"layer '{layer.name}': cannot reshape {shape} to {tuple(new)}")
    return tuple(new)


def _pool(layer: CaffeLayer, x: torch.Tensor) -> torch.Tensor:
    p = layer.proto.pooling_param
    height, width = x.shape[-2:]
    kernel, stride, pad = _pool_geometry(layer, height, width)
    if p.pool not in (p.MAX, p.AVE):
        raise SenetZooError(None, f"layer '{layer.name}': only MAX and AVE pooling are supported")
    if p.global_pooling:
        return x.amax((2, 3), keepdim=True) if p.pool == p.MAX else x.mean((2, 3), keepdim=True)
    ceil = p.round_mode == p.CEIL
    any_pad = any(pad)
    want = tuple(pooling_output_size(n, k, s, q, ceil, any_pad)
                 for n, k, s, q in zip((height, width), kernel, stride, pad))
    if p.pool == p.MAX:
        y = F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil)
    else:  # torch's divisor: the window clipped to the padded input, as Caffe's
        y = F.avg_pool2d(x, kernel, stride, pad, ceil_mode=ceil, count_include_pad=True)
    if tuple(y.shape[-2:]) != want:
        raise SenetZooError(None, f"layer '{layer.name}': pooling geometry (kernel {kernel}, stride {stride}, "
                                  f"pad {pad}) where torch and Caffe disagree on the output size")
    return y


def _last_uses(net: CaffeNet) -> dict[str, int]:
    last: dict[str, int] = {}
    for i, layer in enumerate(net.layers):
        for name in (*layer.bottoms, *layer.tops):
            last[name] = i
    return last


def _execute(net: CaffeNet, blob: np.ndarray, keep: set[str], make_blobs=None) -> dict[str, torch.Tensor]:
    """Run the net layer by layer; ``make_blobs(index, layer, inputs)`` supplies each layer's blobs."""
    values: dict[str, torch.Tensor] = {}
    last = _last_uses(net)
    # channels-last: oneDNN's 1x1 and grouped convolutions are several times faster on CPU in this layout
    data = torch.from_numpy(np.ascontiguousarray(blob, dtype=np.float32)).contiguous(
        memory_format=torch.channels_last)
    inputs_named = [top for layer in net.layers if layer.type == "Input" for top in layer.tops]
    if net.proto is not None:
        inputs_named += list(net.proto.input)  # the V1-era net-level 'input' field
    if len(inputs_named) != 1:
        raise SenetZooError(net.source, f"the interpreter needs exactly one net input, found {len(inputs_named)}")
    values[inputs_named[0]] = data
    with torch.inference_mode():
        for i, layer in enumerate(net.layers):
            if layer.type == "Input":
                continue
            if layer.proto is None:
                raise SenetZooError(net.source, f"layer '{layer.name}' has no parameters message (HDF5 weights?)")
            missing = [b for b in layer.bottoms if b not in values]
            if missing:
                raise SenetZooError(net.source, f"layer '{layer.name}' reads '{missing[0]}', which nothing "
                                                "before it computes")
            inputs = [values[b] for b in layer.bottoms]
            try:
                params = make_blobs(i, layer, inputs) if make_blobs else [torch.from_numpy(b) for b in layer.blobs]
            except SenetZooError as err:
                raise SenetZooError(err.path or net.source, err.message) from None
            if len(layer.tops) != 1:
                raise SenetZooError(net.source, f"layer '{layer.name}' has {len(layer.tops)} tops; "
                                                "the interpreter supports one")
            try:
                values[layer.tops[0]] = _run_layer(layer, inputs, params)
            except SenetZooError as err:
                raise SenetZooError(err.path or net.source, err.message) from None
            except RuntimeError as err:  # shapes that do not fit: name the layer
                raise SenetZooError(net.source, f"layer '{layer.name}' ({layer.type}): "
                                                f"{str(err).splitlines()[0]}") from None
            for name in set(layer.bottoms) | set(layer.tops):
                if last.get(name) == i and name not in keep:
                    values.pop(name, None)
    return values


def _default_output(net: CaffeNet) -> str:
    tops = [layer.tops[0] for layer in net.layers if layer.type == "InnerProduct"]
    return tops[-1] if tops else net.layers[-1].tops[0]


def forward(net: CaffeNet, blob: np.ndarray, output: str | None = None) -> np.ndarray:
    """Caffe's forward pass of ``net`` (with its blobs) on Caffe's input ``blob``; returns blob ``output``
    (default: the top of the last InnerProduct layer) as float32. In-place layers overwrite their blob."""
    output = output or _default_output(net)
    values = _execute(net, blob, {output})
    if output not in values:
        raise SenetZooError(net.source, f"the net computes no blob named '{output}'")
    return values[output].numpy().astype(np.float32, copy=True)


# ---------------------------------------------------------------------------------------------------------------
# Synthesis


class _Calibrator:
    def __init__(self, net: CaffeNet, rng: np.random.Generator):
        self.net = net
        self.rng = rng
        self.blobs: dict[int, list[np.ndarray]] = {}
        self.next_reader: dict[int, str] = {}
        self.branch_ends: set[int] = set()
        writer: dict[str, int] = {}
        for i, layer in enumerate(net.layers):
            for b in layer.bottoms:
                if b in writer and writer[b] not in self.next_reader:
                    self.next_reader[writer[b]] = layer.type
            if layer.type == "Axpy" and len(layer.bottoms) == 3 and layer.bottoms[1] in writer:
                self.branch_ends.add(writer[layer.bottoms[1]])
            for t in layer.tops:
                writer[t] = i

    def weights(self, shape, std: float) -> np.ndarray:
        """Zero-mean uniform weights of standard deviation ``std`` (uniform: 3x faster to draw than normal,
        which matters for SENet-154's 115 M)."""
        w = self.rng.random(shape, dtype=np.float32)
        w -= np.float32(0.5)
        w *= np.float32(std * math.sqrt(12.0))
        return w

    def uniform(self, bounds, n) -> np.ndarray:
        return self.rng.uniform(bounds[0], bounds[1], n).astype(np.float32)

    def scale_factor(self) -> float:
        logs = [(math.log(a), math.log(b)) for a, b in BN_SCALE_FACTOR_RANGES]
        total = sum(b - a for a, b in logs)
        u = self.rng.uniform(0, total)
        for a, b in logs:
            if u <= b - a:
                return float(math.exp(a + u))
            u -= b - a
        return float(math.exp(logs[-1][1]))

    def __call__(self, i: int, layer: CaffeLayer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        kind, p, x = layer.type, layer.proto, inputs[0]
        if kind == "Convolution":
            (kh, kw), _, _, _, group = _conv_geometry(layer)
            cp = p.convolution_param
            fan_in = x.shape[1] // group * kh * kw
            weight = self.weights((cp.num_output, x.shape[1] // group, kh, kw), math.sqrt(2.0 / fan_in))
            blobs = [weight] + ([np.zeros(cp.num_output, np.float32)] if cp.bias_term else [])
            blobs = self.calibrate_affine(i, layer, inputs, blobs)
        elif kind == "InnerProduct":
            ip = p.inner_product_param
            in_features = math.prod(x.shape[_axis(ip.axis, x.ndim):])
            shape = (in_features, ip.num_output) if ip.transpose else (ip.num_output, in_features)
            weight = self.weights(shape, math.sqrt(1.0 / in_features))
            blobs = [weight] + ([np.zeros(ip.num_output, np.float32)] if ip.bias_term else [])
            blobs = self.calibrate_affine(i, layer, inputs, blobs)
        elif kind == "BatchNorm":
            var, mean = torch.var_mean(x, [d for d in range(x.ndim) if d != 1], unbiased=False)
            var = torch.clamp(var, min=max(1e-3 * float(var.median()), 1e-6))  # no dead channel blows up
            s = self.scale_factor()
            blobs = [(mean * s).numpy(), (var * s).numpy(), np.array([s], np.float32)]
        elif kind == "Scale" and len(inputs) == 1:
            sp = p.scale_param
            axis = _axis(sp.axis, x.ndim)
            shape = tuple(x.shape[axis:] if sp.num_axes == -1 else x.shape[axis:axis + sp.num_axes])
            n = math.prod(shape)
            end = i in self.branch_ends
            gamma = self.uniform(_GAMMA_BRANCH_END if end else _GAMMA, n).reshape(shape)
            blobs = [gamma]
            if sp.bias_term:
                blobs.append(self.uniform(_BETA_BRANCH_END if end else _BETA, n).reshape(shape))
        else:
            blobs = []
        blobs = [np.ascontiguousarray(b, dtype=np.float32) for b in blobs]
        self.blobs[i] = blobs
        return [torch.from_numpy(b) for b in blobs]

    def calibrate_affine(self, i: int, layer: CaffeLayer, inputs, blobs: list[np.ndarray]) -> list[np.ndarray]:
        """A Convolution/InnerProduct that no BatchNorm reads: scale and shift it on the calibration batch
        (see the module docstring)."""
        reader = self.next_reader.get(i)
        if reader == "BatchNorm" or len(blobs) < 2:
            if len(blobs) > 1:
                blobs[1] = self.uniform((-0.1, 0.1), blobs[1].size)
            return blobs
        logits = layer.type == "InnerProduct" and reader in ("Softmax", None)
        spread, offset = _TARGETS["logits"] if logits else _TARGETS.get(reader, _TARGETS["other"])
        raw = _run_layer(layer, inputs, [torch.from_numpy(blobs[0])]).double()
        if logits and raw.shape[0] > 1:
            # the classifier sees the input-dependent part of its features only: per class, the batch mean
            # goes into the bias, so different inputs win different classes
            mean = raw.mean(0, keepdim=True)
        else:
            # everything else as a whole (one scalar mean and spread): per-channel standardization of a
            # 4-image batch would amplify small input differences, compounding over 50 SE blocks
            mean = raw.mean().expand(1, raw.shape[1])
        std = float((raw - mean.reshape(mean.shape + (1,) * (raw.ndim - 2))).std())
        gain = spread / std if std > 1e-12 else 1.0
        blobs[0] = (blobs[0].astype(np.float64) * gain).astype(np.float32)
        bias = -mean.reshape(-1).numpy() * gain + self.rng.uniform(-offset, offset, raw.shape[1])
        blobs[1] = bias.astype(np.float32)
        return blobs


def synthesize(net: CaffeNet, seed: int = 0, calibration: np.ndarray | None = None) -> CaffeNet:
    """A copy of ``net`` whose parameter layers carry seeded, calibrated blobs in exactly Caffe's shapes.

    ``calibration``: Caffe input blob(s) (N, 3, H, W) to calibrate on; default four seeded smooth images of
    the net's input size (``calibration_images``).
    """
    if calibration is None:
        shape = net.input_shape or (1, 3, 224, 224)
        images = calibration_images(NUM_CALIBRATION_IMAGES, seed=_CALIBRATION_SEED_OFFSET + seed,
                                    size=(int(shape[-2]), int(shape[-1])))
        calibration = caffe_input(images)
    calibration = np.asarray(calibration, np.float32)
    if calibration.ndim != 4:
        raise ValueError(f"calibration must be a Caffe input blob (N, C, H, W), got shape {calibration.shape}")
    calibrator = _Calibrator(net, np.random.default_rng(seed))
    _execute(net, calibration, set(), calibrator)
    layers = [dataclasses.replace(layer, bottoms=list(layer.bottoms), tops=list(layer.tops),
                                  blobs=calibrator.blobs.get(i, []), proto=_copy_message(layer.proto))
              for i, layer in enumerate(net.layers)]
    return dataclasses.replace(net, layers=layers, proto=_copy_message(net.proto))


def _copy_message(msg):
    if msg is None:
        return None
    copy = type(msg)()
    copy.CopyFrom(msg)
    return copy
