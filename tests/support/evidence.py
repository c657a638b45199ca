"""Release-format caffemodels with seeded, uncalibrated weights in exactly Caffe's blob shapes.

Unlike ``converters.synthetic.synthesize`` no forward pass is run, so the bytes depend on numpy's seeded
generator only (identical on every machine): what the pinned-hash test and the fuzzer need.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from senet_zoo import registry
from senet_zoo.converters import caffe_io
from senet_zoo.converters.convert import caffe_blob_shapes
from senet_zoo.converters.release_layout import parameter_layers, write_release_prototxt


def torch_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    import torch

    from senet_zoo.models import build

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build(arch).state_dict().items()}


def seeded_net(model: str, prototxt: Path, seed: int = 0) -> caffe_io.CaffeNet:
    ckpt = registry.get(model)
    net = caffe_io.read_prototxt(prototxt)
    shapes = torch_shapes(ckpt.architecture)
    rng = np.random.default_rng(seed)
    wanted = {layer.name: layer for layer in parameter_layers(ckpt.architecture)}
    layers = []
    for layer in net.layers:
        spec = wanted.get(layer.name)
        blobs = []
        if spec is not None:
            for what, shape in caffe_blob_shapes(spec, shapes):
                if what == "scale factor":
                    blobs.append(np.array([rng.uniform(0.5, 2.0)], np.float32))
                elif what == "variance":
                    blobs.append(rng.random(shape, dtype=np.float32) + np.float32(0.5))
                else:
                    blobs.append((rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(0.1))
        layers.append(dataclasses.replace(layer, blobs=blobs))
    return dataclasses.replace(net, layers=layers)


def seeded_release(model: str, folder: Path, seed: int = 0) -> tuple[Path, Path, caffe_io.CaffeNet]:
    """(prototxt, caffemodel, net) in ``folder`` under the release's file names."""
    ckpt = registry.get(model)
    folder.mkdir(parents=True, exist_ok=True)
    prototxt = write_release_prototxt(ckpt.architecture, folder / ckpt.prototxt)
    net = seeded_net(model, prototxt, seed)
    caffemodel = folder / ckpt.caffemodel
    caffe_io.write_caffemodel(net, caffemodel)
    return prototxt, caffemodel, net
