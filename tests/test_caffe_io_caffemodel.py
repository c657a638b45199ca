"""Which reader a caffemodel goes to (read_weights, by its magic bytes, not its name) and what probe_weights
refuses from the first bytes, against files written byte by byte: the wire bytes are spelled out, so the
expectation does not come from our writer."""
from __future__ import annotations

import numpy as np
import pytest

from senet_zoo.converters import caffe_io
from senet_zoo.errors import SenetZooError
from support.descriptors import open_fds

h5py = pytest.importorskip("h5py")



def varint(n: int) -> bytes:
    out = b""
    while n > 0x7F:
        out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
    return out + bytes([n])


def field(key: bytes, payload: bytes) -> bytes:
    return key + varint(len(payload)) + payload


# NetParameter { layer { name: "fc" type: "InnerProduct" blobs { data: 1..40 shape { dim: 40 } } } }, no net name:
# it starts with field 100 (layer, key "\xa2\x06"), whose value runs far past the 64 bytes the probe reads.
FLOATS = np.arange(1, 41, dtype="<f4")
BLOB = field(b"\x2a", FLOATS.tobytes()) + field(b"\x3a", b"\x08" + varint(len(FLOATS)))
LAYER = field(b"\x0a", b"fc") + field(b"\x12", b"InnerProduct") + field(b"\x3a", BLOB)
NAMELESS = field(b"\xa2\x06", LAYER)


def refused(fn, path) -> str:
    with pytest.raises(SenetZooError) as info:
        fn(path)
    assert info.value.path == str(path) and info.value.exit_code == 2
    return info.value.message


def test_nameless_net_is_probed_and_read(tmp_path):
    assert len(LAYER) > 64
    path = tmp_path / "nameless.caffemodel"
    path.write_bytes(NAMELESS)
    assert caffe_io.probe_weights(path) is None
    net = caffe_io.read_weights(path)
    assert net.name == "" and [(l.name, l.type) for l in net.layers] == [("fc", "InnerProduct")]
    assert net.layers[0].blobs[0].tolist() == FLOATS.tolist()


@pytest.mark.parametrize("head", [
    b"\x0a\x01n",                  # name: "n"
    b"\x12\x00",                   # V1 layers {}
    b"\x1a\x04data",               # input: "data"
    b"\x20\x01\x20\x03",           # input_dim: 1, 3 (varints)
    b"\x22\x02\x01\x03",           # input_dim packed
    b"\x28\x01",                   # force_backward
    b"\x32\x00", b"\x38\x01", b"\x42\x00",
    b"\xa2\x06\x00",               # layer {}
])
def test_each_netparameter_field_passes_the_probe(tmp_path, head):
    path = tmp_path / "m.caffemodel"
    path.write_bytes(head)
    assert caffe_io.probe_weights(path) is None


@pytest.mark.parametrize("data, message", [
    (b"\x0a\x05abc", "not a Caffe model (its first bytes are no NetParameter field)"),  # value past the file end
    (b"\xa2\x06\xff\xff\x03" + b"\x00" * 100, "not a Caffe model (its first bytes are no NetParameter field)"),
    (b"\x0d\x00\x00\x80\x3f", "not a Caffe model (its first bytes are no NetParameter field)"),  # field 1 as float
    (b"\x08\x01", "not a Caffe model (its first bytes are no NetParameter field)"),  # name as a varint
    (b"\x02\x00", "not a Caffe model (its first bytes are no NetParameter field)"),  # field number 0
    (b"\x80" * 11, "not a Caffe model (its first bytes are no NetParameter field)"),  # endless varint
    (b"\x80\x80", "not a Caffe model (its first bytes are no NetParameter field)"),  # varint cut short
    (b"\x0a\x80", "not a Caffe model (its first bytes are no NetParameter field)"),  # length cut short
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not a Caffe model: a PNG image"),
    (b'name: "x"\nlayer {}\n', "not a Caffe model: a text file (a .prototxt? give it as --prototxt, and the "
                               "binary .caffemodel as --caffemodel)"),
    (b"\nname", "not a Caffe model: a text file (a .prototxt? give it as --prototxt, and the "
                "binary .caffemodel as --caffemodel)"),  # "\n" is field 1, but 'n' is a length past the end
])
def test_probe_refusals(tmp_path, data, message):
    path = tmp_path / "m.caffemodel"
    path.write_bytes(data)
    assert refused(caffe_io.probe_weights, path) == message


def test_probe_reads_64_bytes_to_sniff(tmp_path):
    """The sniffed head is 64 bytes: 62 ASCII bytes, a 2-byte UTF-8 letter, then a byte that is not UTF-8 (a
    head of 63 bytes cuts the letter, one of 65 takes the bad byte: both would say nothing of the file)."""
    path = tmp_path / "m.caffemodel"
    path.write_bytes(b"x" * 62 + "\u00e9".encode() + b"\xff" + b"y" * 10)
    assert refused(caffe_io.probe_weights, path).startswith("not a Caffe model: a text file")


def test_probe_takes_hdf5_by_its_magic(tmp_path):
    path = tmp_path / "weights.bin"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/c/0", data=np.ones(2, np.float32))
    assert caffe_io.probe_weights(path) is None


def test_empty_files(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    assert refused(caffe_io.probe_weights, path) == "empty file, not a Caffe model"
    assert refused(caffe_io.read_weights, path) == "empty file, not a Caffe model"


def test_read_weights_chooses_by_magic_not_name(tmp_path):
    h5 = tmp_path / "looks.caffemodel"
    with h5py.File(h5, "w") as f:
        f.create_dataset("data/conv/0", data=np.full(3, 2.0, np.float32))
    assert [(l.name, l.blobs[0].tolist()) for l in caffe_io.read_weights(h5).layers] == [("conv", [2.0] * 3)]
    binary = tmp_path / "looks.caffemodel.h5"
    binary.write_bytes(NAMELESS)
    assert caffe_io.read_weights(binary).layers[0].name == "fc"
    # the HDF5 magic but not one byte more: the HDF5 reader says so, the binary reader is not tried
    cut = tmp_path / "cut.h5"
    cut.write_bytes(b"\x89HDF\r\n\x1a\n")
    assert refused(caffe_io.read_weights, cut).startswith("unreadable HDF5 file (truncated or corrupt?): ")


def test_read_weights_one_byte_file(tmp_path):
    path = tmp_path / "one.caffemodel"
    path.write_bytes(b"\x89")
    message = refused(caffe_io.read_weights, path)
    assert "HDF5" not in message


def test_read_weights_closes_the_file(tmp_path):
    path = tmp_path / "m.caffemodel"
    path.write_bytes(NAMELESS)
    before = open_fds()
    for _ in range(5):
        caffe_io.read_weights(path)
        caffe_io.probe_weights(path)
    assert open_fds() == before
