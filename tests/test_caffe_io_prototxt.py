"""Text prototxts: read_prototxt against text written out here (V2 and V1 layers, the exact one-line refusals)
and write_prototxt against the exact text protobuf's text format gives for a small net."""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from senet_zoo.converters import caffe_io, caffe_pb2
from senet_zoo.converters.caffe_io import prototxt
from senet_zoo.errors import SenetZooError
from support.descriptors import open_fds

TEXT = """name: "tiny"
input: "data"
input_dim: 1
input_dim: 3
input_dim: 8
input_dim: 8
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  convolution_param {
    num_output: 4
    kernel_size: 3
  }
}
layer {
  name: "relu"
  type: "ReLU"
  bottom: "conv"
  top: "conv"
}
"""


def refused(path) -> str:
    with pytest.raises(SenetZooError) as info:
        caffe_io.read_prototxt(path)
    assert info.value.path == str(path) and info.value.exit_code == 2
    return info.value.message


def test_reads_v2_text(tmp_path):
    path = tmp_path / "tiny.prototxt"
    path.write_text(TEXT)
    net = caffe_io.read_prototxt(str(path))
    assert net.name == "tiny" and net.source == path and net.input_shape == (1, 3, 8, 8)
    assert [(l.name, l.type, l.bottoms, l.tops, l.blobs) for l in net.layers] == [
        ("conv", "Convolution", ["data"], ["conv"], []), ("relu", "ReLU", ["conv"], ["conv"], [])]
    assert net.layers[0].proto.convolution_param == caffe_pb2.ConvolutionParameter(num_output=4, kernel_size=[3])


def test_reads_v1_text(tmp_path):
    path = tmp_path / "old.prototxt"
    path.write_text('layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y" blobs_lr: 1 blobs_lr: 2 '
                    "inner_product_param { num_output: 10 } }\n")
    (layer,) = caffe_io.read_prototxt(path).layers
    assert (layer.name, layer.type, layer.bottoms, layer.tops) == ("ip", "InnerProduct", ["x"], ["y"])
    assert [p.lr_mult for p in layer.proto.param] == [1.0, 2.0]


def test_reads_blobs_given_in_text(tmp_path):
    path = tmp_path / "b.prototxt"
    path.write_text('layer { name: "s" type: "Scale" blobs { data: 1.5 data: -2 shape { dim: 2 } } }\n')
    assert caffe_io.read_prototxt(path).layers[0].blobs[0].tolist() == [1.5, -2.0]


@pytest.mark.parametrize("data", [b"", b" \n\t\r\n"])
def test_empty(tmp_path, data):
    path = tmp_path / "e.prototxt"
    path.write_bytes(data)
    assert refused(path) == "empty file, not a prototxt"


def test_binary_files(tmp_path):
    png = tmp_path / "a.prototxt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert refused(png) == "not a text prototxt: a PNG image"
    blob = tmp_path / "b.prototxt"
    blob.write_bytes(b"\x0a\x02\xff\xfe" + b"\x00" * 10)
    assert refused(blob) == "not a text prototxt: binary data (a .caffemodel? read it with read_weights)"


def test_the_first_64_bytes_are_sniffed(tmp_path):
    """62 ASCII bytes, a 2-byte UTF-8 letter, then a byte that is not UTF-8: the 64-byte head reads as text."""
    path = tmp_path / "t.prototxt"
    path.write_bytes(b"x" * 62 + "\u00e9".encode() + b"\xff" + b"y" * 10)
    assert refused(path) == ("not a text prototxt: a text file (a .prototxt? give it as --prototxt, and the "
                             "binary .caffemodel as --caffemodel)")


def test_parse_errors_name_the_line(tmp_path):
    path = tmp_path / "typo.prototxt"
    path.write_text('name: "x"\nlayer {\n  name: "c"\n  convolution_param { num_outptu: 3 }\n}\n')
    message = refused(path)
    assert message.startswith("not a valid Caffe prototxt: 4:")
    assert "num_outptu" in message


def test_no_layers(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text('name: "x"\ninput: "data"\n')
    assert refused(path) == "no layers: not a Caffe net prototxt"


def test_read_error(tmp_path, monkeypatch):
    path = tmp_path / "r.prototxt"
    path.write_text(TEXT)

    class Failing:
        def __init__(self, fd, mode, closefd):
            assert (mode, closefd) == ("rb", False)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(prototxt.os, "fdopen", Failing)
    assert refused(path) == "cannot read: Input/output error"


def test_missing_file(tmp_path):
    assert refused(tmp_path / "absent.prototxt") == "no such file"


def test_reading_leaves_no_file_open(tmp_path):
    path = tmp_path / "tiny.prototxt"
    path.write_text(TEXT)
    before = open_fds()
    for _ in range(5):
        caffe_io.read_prototxt(path)
    assert open_fds() == before


def test_writes_the_text_format(tmp_path):
    layers = [caffe_io.CaffeLayer("conv", "Convolution", ["data"], ["conv"], [np.ones(3, np.float32)],
                                  caffe_pb2.LayerParameter(convolution_param=caffe_pb2.ConvolutionParameter(
                                      num_output=4, kernel_size=[3]))),
              caffe_io.CaffeLayer("r\u00e9lu", "ReLU", ["conv"], ["conv"], [])]
    net = caffe_io.CaffeNet("tiny", layers, Path("x"), proto=caffe_pb2.NetParameter(input=["data"],
                                                                                  input_dim=[1, 3, 8, 8]))
    path = tmp_path / "out" / "w.prototxt"
    path.parent.mkdir()
    caffe_io.write_prototxt(net, str(path))
    assert path.read_bytes().decode("utf-8") == TEXT.replace('name: "relu"', 'name: "r\u00e9lu"')
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.prototxt"]
    back = caffe_io.read_prototxt(path)
    assert [l.name for l in back.layers] == ["conv", "r\u00e9lu"] and back.layers[0].blobs == []


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "w.prototxt"
    path.write_text("old")
    net = caffe_io.CaffeNet("n", [caffe_io.CaffeLayer("a", "ReLU", [], [], [])], Path("x"))
    net.layers[0].name = 3  # not text: protobuf refuses it while the message is built
    with pytest.raises(TypeError):
        caffe_io.write_prototxt(net, path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["w.prototxt"]


def test_written_as_utf8_whatever_the_locale(tmp_path, monkeypatch):
    """Under a Latin-1 locale (simulated: the encoding text files get when none is named) the text is UTF-8."""
    import io

    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "latin-1")
    net = caffe_io.CaffeNet("", [caffe_io.CaffeLayer("r\u00e9lu", "ReLU", [], [], [])], Path("x"))
    path = tmp_path / "w.prototxt"
    caffe_io.write_prototxt(net, path)
    assert path.read_bytes() == b'layer {\n  name: "r\xc3\xa9lu"\n  type: "ReLU"\n}\n'
