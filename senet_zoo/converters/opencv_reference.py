"""OpenCV's dnn module as an independent Caffe runtime, with its faults for these nets corrected.

The release's prototxt + caffemodel are run by OpenCV's own Caffe importer and CPU kernels (no code of ours
except one layer), so agreement between a converted PyTorch model and this runtime is evidence that the
conversion is exact. What OpenCV gets wrong, and what this module does about it (each shown by a test in
``tests/test_opencv_reference.py``):

* **Axpy.** Caffe's Axpy (the SENet fork's layer; bottoms ``a, x, y``, ``a`` of shape (N, C, 1, 1)) computes
  ``a * x + y``: gate times residual branch, plus shortcut. OpenCV's importer rewrites it into
  ``Scale(y, a) + x``, i.e. ``a * y + x`` (the gate on the shortcut), and that Scale also fails outright for
  batches of more than one image (it looks for N*C gate values along the channel axis). A custom layer
  registered under the name "Axpy" is ignored (the importer rewrites the type before the layer factory is
  asked). So the prototxt is copied with every Axpy's type renamed to ``SenetZooAxpy``, a Python layer that
  computes ``a * x + y`` is registered under that name while the net is read and its layers are instantiated,
  and unregistered again.
* **Winograd.** OpenCV's Winograd 3x3 convolution loses about three decimal digits; it is switched off.
* The backend and target are set to OpenCV / CPU explicitly (no accelerator, no FP16).

Checked and correct in OpenCV (tests against numpy): ceil-mode pooling sizes with Caffe's clip, AVE pooling
that counts padding but not the ceil overhang, global pooling, BatchNorm with its scale factor (including
s = 0) and eps, Scale with bias, and the SE-BN-Inception gate (Reshape to (N, C), two-input Scale, axis 0).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import SenetZooError
from .caffe_io import CaffeLayer, read_prototxt, write_prototxt

__all__ = ["OpenCVCaffeNet", "caffe_input", "CAFFE_MEAN_BGR", "AXPY_TYPE"]

# The release's input: BGR pixels 0-255 minus this per-channel mean (the prototxts' "# mean_value" comment).
CAFFE_MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)

# The type name our corrected Axpy layer is registered under (OpenCV intercepts "Axpy" itself).
AXPY_TYPE = "SenetZooAxpy"

_REGISTRY_LOCK = threading.Lock()  # cv2.dnn_registerLayer is process-global


def caffe_input(images_bgr_uint8: np.ndarray) -> np.ndarray:
    """The release's network input: (N, H, W, 3) BGR 0-255 images -> float32 (N, 3, H, W) minus the mean."""
    images = np.asarray(images_bgr_uint8)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {images.shape}")
    return np.ascontiguousarray((images.astype(np.float32) - CAFFE_MEAN_BGR).transpose(0, 3, 1, 2))


class _AxpyLayer:
    """Caffe's Axpy for OpenCV's Python layer API: top = a * x + y, a of shape (N, C, 1, 1) (or (N, C))."""

    def __init__(self, params, blobs):
        pass

    def getMemoryShapes(self, inputs):  # noqa: N802 (OpenCV's name)
        return [inputs[1]]

    def forward(self, inputs):
        a, x, y = inputs
        a = np.asarray(a, np.float32).reshape(x.shape[0], x.shape[1], *([1] * (x.ndim - 2)))
        return [(a * x + y).astype(np.float32, copy=False)]


def _cv2():
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise SenetZooError(None, f"the OpenCV reference runtime needs opencv-python-headless: {err}") from None
    return cv2


class OpenCVCaffeNet:
    """A release prototxt + caffemodel run by OpenCV's dnn module (Axpy corrected, Winograd off, CPU).

    ``forward(blob)`` takes Caffe's input (float32 (N, 3, H, W), BGR, mean subtracted; see :func:`caffe_input`)
    and returns a named blob as float32; by default the top of the last InnerProduct layer (the logits before
    Softmax, in the caffemodel's class order).
    """

    def __init__(self, prototxt: str | os.PathLike, caffemodel: str | os.PathLike):
        self.prototxt = Path(prototxt)
        self.caffemodel = Path(caffemodel)
        for path in (self.prototxt, self.caffemodel):
            if not path.is_file():
                raise SenetZooError(path, "no such file" if not path.exists() else "is not a file")
        net = read_prototxt(self.prototxt)
        self.layer_names = [layer.name for layer in net.layers]
        # Caffe blob name -> the layer that writes it last in file order (in-place layers overwrite it), which
        # is the OpenCV layer whose output that blob is at the end of the forward pass
        self._producer: dict[str, CaffeLayer] = {}
        for layer in net.layers:
            for top in layer.tops:
                self._producer[top] = layer
        inner_products = [layer.tops[0] for layer in net.layers if layer.type == "InnerProduct"]
        self.default_output = inner_products[-1] if inner_products else net.layers[-1].tops[0]
        renamed = [dataclasses.replace(layer, type=AXPY_TYPE) if layer.type == "Axpy" else layer
                   for layer in net.layers]
        self.num_axpy = sum(layer.type == "Axpy" for layer in net.layers)
        self._param_layers = [(layer.type, layer.name) for layer in net.layers if layer.type in (
            "Convolution", "InnerProduct", "BatchNorm") or (layer.type == "Scale" and len(layer.bottoms) == 1)]
        self._net = self._load(dataclasses.replace(net, layers=renamed))

    def _load(self, renamed_net):
        cv2 = _cv2()
        with tempfile.TemporaryDirectory(prefix="senet_zoo_opencv_") as tmp:
            tmp_prototxt = Path(tmp) / self.prototxt.name
            write_prototxt(renamed_net, tmp_prototxt)
            with _REGISTRY_LOCK:
                cv2.dnn_registerLayer(AXPY_TYPE, _AxpyLayer)
                try:
                    net = cv2.dnn.readNetFromCaffe(str(tmp_prototxt), str(self.caffemodel))
                    if net.empty():
                        raise SenetZooError(self.caffemodel, "OpenCV read an empty net from "
                                                             f"{self.prototxt} + this caffemodel")
                    # OpenCV creates layer objects lazily; create them all while our Axpy is registered
                    for layer_id in range(1, len(net.getLayerNames()) + 1):
                        net.getLayer(layer_id)
                except cv2.error as err:
                    raise SenetZooError(self.caffemodel, "OpenCV cannot load this caffemodel with "
                                                         f"{self.prototxt}: {_cv_message(err)}") from None
                finally:
                    cv2.dnn_unregisterLayer(AXPY_TYPE)
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        net.enableWinograd(False)
        return net

    def _missing_weights(self) -> str | None:
        """OpenCV loads a caffemodel that lacks a layer's weights and fails only in forward, with a page of
        log; this names the layer. Run only after a failure (reading every blob back costs ~1 s for
        SENet-154). Blobs are matched by layer name, as in Caffe."""
        for kind, name in self._param_layers:
            if not len(self._net.getLayer(self._net.getLayerId(name)).blobs):
                return (f"has no weights for {kind} layer '{name}' of {self.prototxt} (weights are matched by "
                        "layer name)")
        return None

    def _layer_for(self, output: str) -> str:
        """The OpenCV layer name for a Caffe blob name (or a layer name)."""
        producer = self._producer.get(output)
        if producer is None:
            if output in self.layer_names:
                return output
            raise SenetZooError(self.prototxt, f"has no blob or layer named '{output}'")
        if producer.type == "Input":
            raise SenetZooError(self.prototxt, f"'{output}' is the net's input, not something it computes")
        if len(producer.tops) != 1:
            raise SenetZooError(self.prototxt, f"blob '{output}' is one of several tops of layer "
                                               f"'{producer.name}'; not supported")
        return producer.name

    def forward(self, blob: np.ndarray, output: str | None = None) -> np.ndarray:
        """Run the net on Caffe's input ``blob`` (N, 3, H, W) and return blob ``output`` (float32)."""
        return self.forward_blobs(blob, [output or self.default_output])[output or self.default_output]

    def forward_blobs(self, blob: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        """Several named blobs of one forward pass (for locating a disagreement layer by layer)."""
        blob = np.asarray(blob)
        if blob.ndim != 4:
            raise ValueError(f"expected Caffe's input blob of shape (N, C, H, W), got {blob.shape}")
        layers = [self._layer_for(name) for name in outputs]
        self._net.setInput(np.ascontiguousarray(blob, dtype=np.float32))
        try:
            results = self._net.forward(layers)
        except _cv2().error as err:
            message = self._missing_weights() or f"OpenCV forward pass failed: {_cv_message(err)}"
            raise SenetZooError(self.caffemodel, message) from None
        return {name: np.array(result, dtype=np.float32) for name, result in zip(outputs, results)}


def _cv_message(err: Exception) -> str:
    """OpenCV's error as one short line: its own message and the function that raised it."""
    text = getattr(err, "err", None) or str(err)
    text = " ".join(line.strip() for line in str(text).splitlines() if line.strip()) or type(err).__name__
    func = getattr(err, "func", None)
    return f"{text} (in {func})" if func else text
