"""caffe_io.sniff: opening a user's file, and what a file is from its first bytes (the magic numbers below are
the formats' published signatures, written out here by hand)."""
from __future__ import annotations

import os
import pathlib

import pytest

from senet_zoo.converters.caffe_io.sniff import _open_for_reading, _sniff, is_hdf5
from senet_zoo.errors import SenetZooError
from support.descriptors import open_fds

TEXT = "a text file (a .prototxt? give it as --prototxt, and the binary .caffemodel as --caffemodel)"
PICKLE = "a Python pickle (a PyTorch checkpoint?)"


def open_error(path) -> str:
    with pytest.raises(SenetZooError) as info:
        _open_for_reading(path)
    return str(info.value)


def test_a_regular_file_is_opened_for_reading(tmp_path):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(b"\x0a\x01x")
    fd = _open_for_reading(path)
    try:
        assert os.read(fd, 10) == b"\x0a\x01x"
        with pytest.raises(OSError):
            os.write(fd, b"y")
    finally:
        os.close(fd)


def test_missing_file(tmp_path):
    assert open_error(tmp_path / "nope") == f"{tmp_path / 'nope'}: no such file"


def test_a_directory_is_refused_and_not_left_open(tmp_path):
    before = open_fds()
    assert open_error(tmp_path) == f"{tmp_path}: is a directory, not a file"
    assert open_fds() == before


def test_a_device_is_not_a_regular_file(tmp_path):
    before = open_fds()
    assert open_error(pathlib.Path("/dev/null")) == "/dev/null: is not a regular file"
    assert open_fds() == before


def test_an_os_error_names_its_reason(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert open_error(loop) == f"{loop}: cannot open: Too many levels of symbolic links"


@pytest.mark.parametrize("head, what", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
    (b"GIF89a\x01\x00", "a GIF image"),
    (b"GIF87a", "a GIF image"),
    (b"PK\x03\x04\x14\x00", "a ZIP archive (a PyTorch checkpoint?)"),
    (b"\x1f\x8b\x08\x00", "a gzip file"),
    (b"\x93NUMPY\x01\x00", "a NumPy .npy file"),
    (b"BZh91AY&SY", "a bzip2 file"),
    (b"\xfd7zXZ\x00\x00", "an xz file"),
    (b"\x7fELF\x02\x01\x01", "an executable"),
])
def test_magic_numbers(head, what):
    assert _sniff(head) == what


@pytest.mark.parametrize("head, what", [
    (b"\xff\xd8", None),  # two bytes of a JPEG's three: not enough
    (b"\x89PNG\r\n\x1a", None),
    (b"PK\x03\x05", None),
    (b"\x1f\x8c\x08", None),
])
def test_a_partial_magic_is_not_the_format(head, what):
    assert _sniff(head) is what


@pytest.mark.parametrize("head, what", [
    (b"\x80\x02}q\x00", PICKLE), (b"\x80\x03", PICKLE), (b"\x80\x04\x95", PICKLE), (b"\x80\x05\x95", PICKLE),
    (b"\x80\x01\x00", None), (b"\x80\x06\x00", None), (b"\x80", None), (b"\x81\x02\x00", None),
])
def test_pickle_protocols_two_to_five(head, what):
    assert _sniff(head) == what


def test_safetensors_header():
    assert _sniff(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"") == "a safetensors file"
    assert _sniff(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\":{}}") == "a safetensors file"
    assert _sniff(b"\x40\x00\x00\x00\x00\x00\x00\x00{") is None  # 9 bytes
    assert _sniff(b"\x40\x00\x00\x00\x00\x00\x00\x00[\"") is None
    assert _sniff(b"\x40\x00\x00\x00\x00\x00\x00{\"\x00") is None  # the brace one byte early


@pytest.mark.parametrize("head, what", [
    (b"name: \"SE-ResNet-50\"\r\nlayer {\n\ttop: \"data\"\n", TEXT),
    (b"x", TEXT),
    ("input: \"données\"".encode(), TEXT),
    (b"", None),  # nothing to tell from
    (b"name: \x01", None),  # a control character: binary
    (b"\x0a\x03net", None),  # a NetParameter's first bytes: a newline, then the length 3
    (b"name: \xff\xfe", None),  # not UTF-8
])
def test_text(head, what):
    assert _sniff(head) == what


def test_is_hdf5(tmp_path):
    h5 = tmp_path / "a.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 16)
    short = tmp_path / "short"
    short.write_bytes(b"\x89HDF\r\n\x1a")
    other = tmp_path / "other"
    other.write_bytes(b"\x89HDF\r\n\x1a\x0b" + b"\x00" * 16)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert is_hdf5(h5) is True
    assert is_hdf5(str(h5)) is True
    assert (is_hdf5(short), is_hdf5(other), is_hdf5(empty)) == (False, False, False)


@pytest.mark.parametrize("err, message", [
    (IsADirectoryError(21, "Is a directory"), "is a directory, not a file"),  # what some systems answer
    (PermissionError(13, "Permission denied"), "cannot open: Permission denied"),  # tests run as root here
])
def test_what_the_system_refuses_is_said_in_one_line(tmp_path, monkeypatch, err, message):
    def refuse(*args, **kwargs):
        raise err

    monkeypatch.setattr(os, "open", refuse)
    assert open_error(tmp_path / "w.caffemodel") == f"{tmp_path / 'w.caffemodel'}: {message}"
