"""What each Caffe layer type of the release means, and how its blobs become PyTorch tensors.

The layer types of the seven deploy prototxts and their meaning at test time (the PyTorch side lives in
``senet_zoo/models``):

* ``Convolution``: blobs (out, in/group, kh, kw) [+ bias (out,)]; same layout as ``nn.Conv2d``.
* ``BatchNorm`` (``use_global_stats``): blobs (mean·s, var·s, s) where s is the moving-average scale factor;
  the statistics are the first two divided by s, and s = 0 means factor 0 (Caffe's own rule).
  y = (x - mean) / sqrt(var + eps), eps from ``batch_norm_param.eps`` (default 1e-5).
* ``Scale`` after BatchNorm: blobs gamma [+ beta]; with BatchNorm it is one ``nn.BatchNorm2d``.
* two-input ``Scale`` with ``axis: 0`` (SE-BN-Inception): multiplies (N, C, H, W) by a (N, C) bottom that a
  ``Reshape`` (dim 0, dim 0) made from the (N, C, 1, 1) gate: the SE re-weighting.
* ``Axpy`` with bottoms (a, x, y): a·x + y = gate · residual branch + shortcut.
* ``Pooling``: output size rounds up (ceil), with Caffe's clip of a last window that would start in the
  padding; MAX ignores padding; AVE divides by the window clipped to the *padded* input (padding counts,
  the ceil overhang does not); ``global_pooling`` averages the whole map.
* ``InnerProduct``: blobs (out, in) [+ bias]; old files store the weight as (1, 1, out, in).
* ``ReLU``, ``Sigmoid``, ``Concat`` (channels), ``Softmax``; ``Dropout`` is the identity at test.
* ``Input``: 1x3x224x224, BGR, 0-255 minus the mean (104, 117, 123), no std.
"""
from __future__ import annotations

import numpy as np

# Types a deploy prototxt of the release may contain; anything else is refused with the layer's name.
KNOWN_TYPES = frozenset({
    "Input", "Convolution", "BatchNorm", "Scale", "ReLU", "Sigmoid", "Pooling", "Axpy", "Concat", "Reshape",
    "InnerProduct", "Dropout", "Softmax",
})
PARAMETER_TYPES = frozenset({"Convolution", "BatchNorm", "Scale", "InnerProduct"})

CAFFE_BN_EPS = 1e-5
TORCH_BN_EPS = 1e-5   # nn.BatchNorm2d's default, which timm's models (and ours) are built with


def batchnorm_statistics(blobs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, var) from Caffe's (mean·s, var·s, s) BatchNorm blobs."""
    s = np.float32(blobs[2].reshape(-1)[0])
    # Exactly Caffe's arithmetic: factor = 1/s in float32, then one float32 multiply per statistic.
    factor = np.float32(0) if s == 0 else np.float32(1) / s
    mean = blobs[0].reshape(-1).astype(np.float32) * factor
    var = blobs[1].reshape(-1).astype(np.float32) * factor
    return mean, var


def fold_batchnorm(bn_blobs: list[np.ndarray], eps: float, scale_blobs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """BatchNorm + Scale as the state of one ``nn.BatchNorm2d`` built with eps = TORCH_BN_EPS.

    A layer eps other than PyTorch's is moved into the variance: sqrt((var + eps - torch_eps) + torch_eps)
    is the same denominator, and the module stays a plain BatchNorm2d that timm can load.
    """
    mean, var = batchnorm_statistics(bn_blobs)
    if np.float32(eps) != np.float32(TORCH_BN_EPS):
        var = (var.astype(np.float64) + (eps - TORCH_BN_EPS)).astype(np.float32)
    channels = mean.shape[0]
    gamma = scale_blobs[0].reshape(-1)
    beta = scale_blobs[1].reshape(-1) if len(scale_blobs) > 1 else np.zeros(channels, np.float32)
    return {
        "weight": gamma.astype(np.float32),
        "bias": beta.astype(np.float32),
        "running_mean": mean.astype(np.float32),
        "running_var": var.astype(np.float32),
        "num_batches_tracked": np.zeros((), np.int64),
    }


def convolution(blobs: list[np.ndarray], reverse_input_channels: bool = False) -> dict[str, np.ndarray]:
    """Convolution blobs as ``nn.Conv2d`` state; ``reverse_input_channels`` turns a BGR first layer into RGB."""
    weight = blobs[0]
    if reverse_input_channels:
        weight = weight[:, ::-1]
    state = {"weight": np.ascontiguousarray(weight, dtype=np.float32)}
    if len(blobs) > 1:
        state["bias"] = blobs[1].reshape(-1).astype(np.float32)
    return state


def inner_product(blobs: list[np.ndarray], row_order: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """InnerProduct blobs as ``nn.Linear`` state; ``row_order`` re-orders the outputs (classes)."""
    weight = blobs[0].reshape(blobs[0].shape[-2], blobs[0].shape[-1])
    bias = blobs[1].reshape(-1) if len(blobs) > 1 else np.zeros(weight.shape[0], np.float32)
    if row_order is not None:
        weight, bias = weight[row_order], bias[row_order]
    return {"weight": np.ascontiguousarray(weight, dtype=np.float32), "bias": np.ascontiguousarray(bias, np.float32)}


def pooling_output_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True,
                        any_pad: bool | None = None) -> int:
    """Caffe's pooled size along one axis: rounded up (``round_mode`` CEIL, the default; FLOOR exists in
    newer Caffe), then, if the layer pads along *either* axis (``any_pad``, default: this axis's ``pad``),
    drop a last window that would start inside the padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if (pad if any_pad is None else any_pad) and (out - 1) * stride >= size + pad:
        out -= 1
    return out
