"""``timm_weights/torch_zip.py``: a ``torch.save`` file read as data. What torch itself saves reads back as
``torch.load(weights_only=True)`` gives it; a pickle that asks for anything else is refused in one line
before anything runs (the fuzzer's ``torch_zip`` format mutates such files at random: tests/test_fuzz.py)."""
from __future__ import annotations

import collections
import io
import pickle
import pickletools
import zipfile

import numpy as np
import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.timm_weights.torch_zip import read_torch_zip


def _saved(tmp_path, state, name="ckpt.pth"):
    import torch

    path = tmp_path / name
    torch.save(state, path)
    return path


def _state():
    import torch

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 2))
    state = m.state_dict()      # an OrderedDict with _metadata, as every state_dict
    state["half_view"] = torch.arange(10, dtype=torch.float16)[2:8:2]
    state["bf16"] = torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16)
    state["transposed"] = torch.arange(12.0).reshape(3, 4).t()
    state["scalar"] = torch.tensor(3)
    state["empty"] = torch.zeros(0, 3)
    state["tied"] = state["2.weight"]                      # shares its storage
    return state


def test_what_torch_saves_reads_back_as_torch_loads_it(tmp_path):
    import torch

    path = _saved(tmp_path, _state())
    got = read_torch_zip(path)
    ref = torch.load(path, weights_only=True)
    assert list(got) == list(ref)
    for k, v in ref.items():
        want = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)
    assert got["bf16"].tolist() == [1.5, -2.25, 3.0]       # bfloat16 widened exactly
    assert got["half_view"].tolist() == [2.0, 4.0, 6.0]


def _rezip(path, out, *, pkl: bytes | None = None, drop=(), extra=None, compress=()):
    """``path``'s archive with data.pkl replaced / entries dropped, added or compressed (valid CRCs)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if any(info.filename.endswith(d) for d in drop):
                continue
            data = src.read(info)
            if pkl is not None and info.filename.endswith("/data.pkl"):
                data = pkl
            kind = zipfile.ZIP_DEFLATED if any(info.filename.endswith(c) for c in compress) else zipfile.ZIP_STORED
            dst.writestr(zipfile.ZipInfo(info.filename, (1980, 1, 1, 0, 0, 0)), data, compress_type=kind)
        for name, data in (extra or {}).items():
            dst.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return out


def _pkl(path) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    base = _saved(tmp_path, {"w": __import__("torch").zeros(2)})
    evil = pickle.dumps({"w": _RunsACommand(marker)}, protocol=2)
    bad = _rezip(base, tmp_path / "evil.pth", pkl=evil)
    with pytest.raises(SenetZooError, match=r"refused: the pickle calls posix\.system, which a checkpoint of "
                                            r"tensors never needs \(refused without running it\)"):
        read_torch_zip(bad)
    assert not marker.exists()
    # and the same file is what torch.load itself would refuse with weights_only=True
    import torch

    with pytest.raises(pickle.UnpicklingError):
        torch.load(bad, weights_only=True)
    assert not marker.exists()


@pytest.mark.parametrize("mutate, message", [
    # a callable that is not on the list, by GLOBAL and by STACK_GLOBAL
    (lambda p: p.replace(b"ccollections\nOrderedDict\n", b"cbuiltins\neval\n"), "calls builtins.eval"),
    (lambda p: p.replace(b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nload\n"), "calls torch.load"),
    (lambda p: p.replace(b"ctorch\nFloatStorage\n", b"cos\nFloatStorage\n"), "persistent id that is not a torch storage"),
    (lambda p: p.replace(b"ctorch\nFloatStorage\n", b"ctorch\nQInt8Storage\n"), "storage type torch.QInt8Storage"),
    (lambda p: p[:-1], "malformed pickle|has no STOP"),
    (lambda p: b"\x80\x02(ios\nsystem\n.", "opcode INST"),           # INST: a class instance
])
def test_pickles_outside_the_whitelist_are_refused(tmp_path, mutate, message):
    import torch

    base = _saved(tmp_path, collections.OrderedDict(w=torch.ones(2, 3)))
    bad = _rezip(base, tmp_path / "bad.pth", pkl=mutate(_pkl(base)))
    with pytest.raises(SenetZooError, match=message) as e:
        read_torch_zip(bad)
    assert len(str(e.value).splitlines()) == 1


def _pickle_with(size, stride, offset=0, numel=6, key="0"):
    """A data.pkl of one tensor with the given view, written opcode by opcode (protocol 2)."""
    def tup(xs):
        return b"(" + b"".join(b"J" + int(x).to_bytes(4, "little", signed=True) for x in xs) + b"t"

    return (b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w"
            b"ctorch._utils\n_rebuild_tensor_v2\n("
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX" + len(key).to_bytes(4, "little") + key.encode()
            + b"X\x03\x00\x00\x00cpuJ" + numel.to_bytes(4, "little") + b"tQ"
            + b"J" + offset.to_bytes(4, "little") + tup(size) + tup(stride)
            + b"\x89ccollections\nOrderedDict\n)RtRu.")


def test_the_hand_written_pickle_is_read_as_torch_reads_it(tmp_path):
    import torch

    base = _saved(tmp_path, collections.OrderedDict(w=torch.arange(6.0)))
    good = _rezip(base, tmp_path / "good.pth", pkl=_pickle_with((2, 3), (3, 1)))
    np.testing.assert_array_equal(read_torch_zip(good)["w"], np.arange(6.0, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(torch.load(good, weights_only=True)["w"].numpy(), read_torch_zip(good)["w"])


@pytest.mark.parametrize("view, message", [
    (dict(size=(2, 4), stride=(4, 1)), "reaches past its storage of 6 elements"),
    (dict(size=(3,), stride=(1,), offset=4), "reaches past its storage"),
    (dict(size=(1 << 30,), stride=(0,)), "a tensor of 1073741824 elements viewing a storage of 6"),
    (dict(size=(1,) * 9, stride=(1,) * 9), "at most 8 sizes"),
    (dict(size=(2, 3), stride=(3, 1), numel=7), "storage 0 holds 24 bytes, its 7 float32 elements need 28"),
    (dict(size=(2, 3), stride=(3, 1), key="9"), "storage 9 is missing from the archive"),
])
def test_views_and_storages_are_checked_against_each_other(tmp_path, view, message):
    import torch

    base = _saved(tmp_path, collections.OrderedDict(w=torch.arange(6.0)))
    bad = _rezip(base, tmp_path / "bad.pth", pkl=_pickle_with(**view))
    with pytest.raises(SenetZooError, match=message):
        read_torch_zip(bad)


@pytest.mark.parametrize("change, message", [
    (dict(compress=("data/0",)), "is compressed; torch.save stores entries as they are"),
    (dict(extra={"other/data.pkl": b"\x80\x02}."}), "2 top-level data.pkl entries"),
    (dict(extra={"archive/byteorder": b"big"}, drop=("byteorder",)), "big-endian data"),
    (dict(drop=("data.pkl",)), "0 top-level data.pkl entries"),
])
def test_archives_torch_would_not_write_are_refused(tmp_path, change, message):
    import torch

    base = _saved(tmp_path, collections.OrderedDict(w=torch.arange(6.0)))
    prefix = zipfile.ZipFile(base).namelist()[0].split("/")[0]
    if "extra" in change:
        change["extra"] = {k.replace("archive/", f"{prefix}/"): v for k, v in change["extra"].items()}
    with pytest.raises(SenetZooError, match=message):
        read_torch_zip(_rezip(base, tmp_path / "bad.pth", **change))


def test_other_files_are_refused_in_one_line(tmp_path):
    import torch

    path = tmp_path / "x.pth"
    cases = {
        b"\x80\x02\x8a\x0alegacy": "legacy \\(pre-1.6\\) format, which senet-zoo does not read without unpickling",
        b"GIF89a": "not a torch checkpoint",
        b"PK\x03\x04" + b"\x00" * 40: "not a readable torch zip archive",
    }
    for data, message in cases.items():
        path.write_bytes(data)
        with pytest.raises(SenetZooError, match=message) as e:
            read_torch_zip(path)
        assert len(str(e.value).splitlines()) == 1
    full = _saved(tmp_path, collections.OrderedDict(w=torch.arange(6.0))).read_bytes()
    path.write_bytes(full[: len(full) // 2])   # truncated
    with pytest.raises(SenetZooError, match="not a readable torch zip archive"):
        read_torch_zip(path)


def test_a_deeply_nested_pickle_is_refused_without_recursing(tmp_path):
    import torch

    base = _saved(tmp_path, collections.OrderedDict(w=torch.arange(6.0)))
    deep = b"\x80\x02" + b"(" * 200_000 + b"t" * 200_000 + b"Q."     # a 200,000-deep tuple as a storage id
    with pytest.raises(SenetZooError, match="persistent id that is not a torch storage"):
        read_torch_zip(_rezip(base, tmp_path / "deep.pth", pkl=deep))


def test_a_training_checkpoint_gives_its_state_dict(tmp_path):
    import torch

    path = _saved(tmp_path, {"state_dict": collections.OrderedDict(w=torch.ones(2)), "epoch": 3})
    assert list(read_torch_zip(path)) == ["w"]
    path = _saved(tmp_path, {"w": torch.ones(2), "epoch": 3}, "mixed.pth")
    with pytest.raises(SenetZooError, match="entry 'epoch' is not a named tensor"):
        read_torch_zip(path)


def test_opcodes_used_are_a_handful(tmp_path):
    """What torch writes for a state dict stays within the opcodes the reader knows (a torch upgrade that
    writes others shows up here, not as a user's refusal)."""
    path = _saved(tmp_path, _state())
    used = {op.name for op, _, _ in pickletools.genops(_pkl(path))}
    assert used <= {"PROTO", "GLOBAL", "BINPUT", "EMPTY_TUPLE", "REDUCE", "MARK", "BINUNICODE", "BININT1",
                    "BININT", "BININT2", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "BINPERSID", "NEWFALSE",
                    "NEWTRUE", "BINGET", "LONG_BINGET", "LONG_BINPUT", "SETITEMS", "SETITEM", "STOP",
                    "EMPTY_DICT", "BUILD", "NONE", "LONG1"}, used


def test_a_directory_that_lies_about_an_entrys_size_is_refused_before_the_read(tmp_path):
    # Found by the fuzzer (torch_zip, seed 3, case 3614): a stored entry whose central-directory record says
    # 1.3 GB made zipfile's read allocate that much for a 2.7 kB file.
    import struct
    import tracemalloc

    import torch

    path = _saved(tmp_path, collections.OrderedDict(w=torch.arange(6.0)))
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02", data.index(b"/data/0") - 200)
    while not data[at + 46: at + 46 + struct.unpack_from("<H", data, at + 28)[0]].endswith(b"/data/0"):
        at = data.index(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, at + 20, 0x4E000000)          # compressed size: 1.3 GB
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(SenetZooError, match=r"declares 24 bytes \(1308622848 stored\) in a file of"):
            read_torch_zip(path)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()
