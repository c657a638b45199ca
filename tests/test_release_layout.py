"""Our release layout (derived from the PyTorch architectures) equals every official prototxt, layer by layer."""
import pytest
from google.protobuf import json_format

from senet_zoo.converters import caffe_io
from senet_zoo.converters.convert import _conv_param, _pool_param, check_topology
from senet_zoo.converters.release_layout import write_release_prototxt
from senet_zoo import registry
from conftest import PROTOTXTS, release_file


def _normalized(layer):
    params = json_format.MessageToDict(layer.proto, preserving_proto_field_name=True)
    for key in ("name", "type", "bottom", "top", "phase"):
        params.pop(key, None)
    if layer.type == "Convolution":
        params["convolution_param"] = _conv_param(layer.proto)
    if layer.type == "Pooling":
        params["pooling_param"] = _pool_param(layer.proto)
    return layer.name, layer.type, tuple(layer.bottoms), tuple(layer.tops), params


@pytest.mark.parametrize("name", list(PROTOTXTS))
def test_release_layout_equals_official_prototxt(name, tmp_path):
    official = caffe_io.read_prototxt(release_file(PROTOTXTS[name]))
    ours = caffe_io.read_prototxt(write_release_prototxt(registry.get(name).architecture, tmp_path / "ours.prototxt"))
    assert len(ours.layers) == len(official.layers)
    for a, b in zip(official.layers, ours.layers):
        assert _normalized(a) == _normalized(b)
    check_topology(official, registry.get(name))
