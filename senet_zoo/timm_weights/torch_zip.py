"""A ``torch.save`` checkpoint (the zip format, torch >= 1.6) read as data, never run.

``torch.load`` unpickles ``data.pkl``, and unpickling runs whatever callables the file names. Here the
pickle's opcodes are only *parsed* (``pickletools.genops``) and interpreted by a small stack machine that
knows the few things a state dict of tensors is made of, and refuses everything else before it could mean
anything:

* ``collections.OrderedDict`` (called with no arguments; its pickled ``__dict__``, torch's ``_metadata``,
  is accepted and dropped),
* ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[,
  metadata])`` with an empty ``backward_hooks`` and no metadata,
* persistent ids ``('storage', torch.<Type>Storage, key, location, numel)``, the storages being the zip
  entries ``<archive>/data/<key>``, read here with their sizes checked.

Limits, each a one-line refusal: the archive's entry count, the size of ``data.pkl`` and of the pickle's
integers, stored (uncompressed) entries only, little-endian data only, tensors of at most 8 dimensions whose
view lies inside their storage and is no larger than it, a storage entry exactly as long as its declared
elements, and tensors that copy out at most ``OUTPUT_FACTOR`` times the storages' bytes. The memory used is
the storages' bytes (at most the file's size) plus one copy of each tensor.
"""
from __future__ import annotations

import pickletools
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import SenetZooError

MAX_ENTRIES = 100_000
MAX_PICKLE_BYTES = 64 << 20
MAX_DIMS = 8
OUTPUT_FACTOR = 4        # the tensors copied out: at most this many times the storages' bytes
ZIP_MAGIC = b"PK\x03\x04"
# torch.save's legacy (pre-1.6) format starts with a pickled magic number: protocol 2, LONG1 of 10 bytes
LEGACY_MAGIC = b"\x80\x02\x8a\x0a"

# storage type -> dtype (what torch pickles as the storage's class)
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# bfloat16 has no numpy type: its storage is read as its bit pattern, widened to float32 exactly
BFLOAT16 = "BFloat16Storage"


class _Global:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


class _Storage:
    __slots__ = ("type", "key", "numel")

    def __init__(self, type_: str, key: str, numel: int):
        self.type, self.key, self.numel = type_, key, numel


class _Tensor:
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


_MARK = object()
_CONSTANTS = {"EMPTY_DICT": dict, "EMPTY_LIST": list, "EMPTY_TUPLE": tuple, "NONE": lambda: None,
              "NEWTRUE": lambda: True, "NEWFALSE": lambda: False}
_ALLOWED_CALLS = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2"}
_INT_LIMIT = 1 << 62


def _is_int(x) -> bool:
    return type(x) is int and 0 <= x < _INT_LIMIT


class _Refused(Exception):
    """What the pickle asks for that a state dict of tensors never does."""


def _check_ints(values, what: str) -> tuple[int, ...]:
    # (reprs of pickled values are never formatted: a deeply nested one would recurse)
    if type(values) is not tuple or len(values) > MAX_DIMS or not all(_is_int(v) for v in values):
        raise _Refused(f"a tensor {what} that is not a tuple of at most {MAX_DIMS} sizes")
    return values


def _reduce(func, args):
    if not isinstance(func, _Global) or func.qualname not in _ALLOWED_CALLS:
        name = func.qualname if isinstance(func, _Global) else type(func).__name__
        raise _Refused(f"the pickle calls {name}, which a checkpoint of tensors never needs "
                       "(refused without running it)")
    if type(args) is not tuple:
        raise _Refused(f"{func.qualname} called with {type(args).__name__} arguments")
    if func.name == "OrderedDict":
        if args:
            raise _Refused("OrderedDict called with arguments")
        return OrderedDict()
    if len(args) not in (6, 7):
        raise _Refused(f"_rebuild_tensor_v2 with {len(args)} arguments (expected 6 or 7)")
    storage, offset, size, stride, requires_grad, hooks = args[:6]
    if not isinstance(storage, _Storage):
        raise _Refused("_rebuild_tensor_v2 without a storage")
    if not _is_int(offset) or type(requires_grad) is not bool:
        raise _Refused("_rebuild_tensor_v2 with a bad offset or requires_grad")
    if not (isinstance(hooks, OrderedDict) and not hooks) or (len(args) == 7 and args[6] not in (None, {})):
        raise _Refused("a tensor with backward hooks or extra metadata")
    size, stride = _check_ints(size, "size"), _check_ints(stride, "stride")
    if len(size) != len(stride):
        raise _Refused(f"tensor size {size} and stride {stride} differ in length")
    if 0 not in size:  # an empty tensor reads nothing
        extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
        if extent > storage.numel:
            raise _Refused(f"a tensor view {size} at offset {offset} reaches past its storage of "
                           f"{storage.numel} elements")
        # a view may not be larger than its storage (stride 0 would repeat one element a billion times)
        if _numel(size) > storage.numel:
            raise _Refused(f"a tensor of {_numel(size)} elements viewing a storage of {storage.numel}")
    return _Tensor(storage, offset, size, stride)


def _numel(size: tuple[int, ...]) -> int:
    n = 1
    for d in size:
        n *= d
    return n


def _persistent(pid, storages: dict[str, _Storage]) -> _Storage:
    if (type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[1], _Global)
            or pid[1].module != "torch" or type(pid[2]) is not str or type(pid[3]) is not str
            or not _is_int(pid[4])):
        raise _Refused(f"a persistent id that is not a torch storage ({type(pid).__name__})")
    type_, key, numel = pid[1].name, pid[2], pid[4]
    if type_ not in STORAGE_DTYPES and type_ != BFLOAT16:
        raise _Refused(f"storage type torch.{type_} is not one a checkpoint of tensors uses")
    known = storages.get(key)
    if known is None:
        storages[key] = known = _Storage(type_, key, numel)
    elif (known.type, known.numel) != (type_, numel):
        raise _Refused(f"storage {key} is declared twice, differently")
    return known


def parse_pickle(data: bytes):
    """(the unpickled object, with _Tensor leaves; {key: _Storage}) of a checkpoint's ``data.pkl``."""
    stack: list = []
    memo: dict = {}
    storages: dict[str, _Storage] = {}

    def pop_mark() -> list:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise _Refused("MARK expected")

    def pop():
        if not stack or stack[-1] is _MARK:
            raise _Refused("stack underflow")
        return stack.pop()

    try:
        for op, arg, _pos in pickletools.genops(data):
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                if len(stack) != 1:
                    raise _Refused("the pickle ends with a malformed stack")
                return stack[0], storages
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                stack.append(_Global(module, attr))
            elif name == "STACK_GLOBAL":
                attr, module = pop(), pop()
                if type(module) is not str or type(attr) is not str:
                    raise _Refused("STACK_GLOBAL of non-strings")
                stack.append(_Global(module, attr))
            elif name == "MARK":
                stack.append(_MARK)
            elif name in _CONSTANTS:
                stack.append(_CONSTANTS[name]())
            elif name in ("BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT"):
                if name == "LONG1" and abs(arg) >= _INT_LIMIT:
                    raise _Refused("an integer too large for a tensor size")
                stack.append(arg)
            elif name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"):
                stack.append(arg)
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = [pop() for _ in range(n)][::-1]
                stack.append(tuple(items))
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in ("BINPUT", "LONG_BINPUT"):
                if not stack:
                    raise _Refused("PUT on an empty stack")
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                if not stack:
                    raise _Refused("MEMOIZE on an empty stack")
                memo[len(memo)] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise _Refused(f"memo {arg} used before it is set")
                stack.append(memo[arg])
            elif name == "BINPERSID":
                stack.append(_persistent(pop(), storages))
            elif name == "REDUCE":
                args = pop()
                stack.append(_reduce(pop(), args))
            elif name == "BUILD":  # an OrderedDict's __dict__ (torch's _metadata): data, dropped
                state, target = pop(), pop()
                if not isinstance(target, OrderedDict) or type(state) is not dict:
                    raise _Refused("BUILD of something other than an OrderedDict's attributes")
                stack.append(target)
            elif name in ("SETITEM", "SETITEMS"):
                items = [pop(), pop()][::-1] if name == "SETITEM" else pop_mark()
                target = pop()
                if not isinstance(target, dict) or len(items) % 2:
                    raise _Refused("SETITEM on something other than a dict")
                for k, v in zip(items[::2], items[1::2]):
                    if type(k) not in (str, int):
                        raise _Refused(f"a dict key of type {type(k).__name__}")
                    target[k] = v
                stack.append(target)
            elif name in ("APPEND", "APPENDS"):
                items = [pop()] if name == "APPEND" else pop_mark()
                target = pop()
                if type(target) is not list:
                    raise _Refused("APPEND to something other than a list")
                target.extend(items)
                stack.append(target)
            else:
                raise _Refused(f"pickle opcode {name}, which a checkpoint of tensors never uses")
    except _Refused:
        raise
    except (ValueError, KeyError, IndexError, UnicodeDecodeError) as e:  # genops: a malformed pickle
        raise _Refused(f"malformed pickle ({str(e).splitlines()[0][:80] if str(e) else type(e).__name__})") from None
    raise _Refused("the pickle has no STOP")


def _flatten(obj) -> dict[str, _Tensor]:
    """The {name: tensor} of a state dict, or of the ``state_dict`` entry of a training checkpoint."""
    if not isinstance(obj, dict):
        raise _Refused(f"holds a {type(obj).__name__}, not a state dict")
    if not all(isinstance(v, _Tensor) for v in obj.values()) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    bad = next((k for k, v in obj.items() if not isinstance(v, _Tensor) or type(k) is not str), None)
    if bad is not None:
        raise _Refused(f"entry {bad!r:.60} is not a named tensor")
    if not obj:
        raise _Refused("holds no tensors")
    return obj


def _storage_array(zf: zipfile.ZipFile, info: zipfile.ZipInfo, storage: _Storage) -> np.ndarray:
    is_bf16 = storage.type == BFLOAT16
    dtype = np.dtype(np.uint16 if is_bf16 else STORAGE_DTYPES[storage.type])
    if info.file_size != storage.numel * dtype.itemsize:
        raise _Refused(f"storage {storage.key} holds {info.file_size} bytes, its {storage.numel} "
                       f"{'bfloat16' if is_bf16 else dtype.name} elements need {storage.numel * dtype.itemsize}")
    raw = np.frombuffer(zf.read(info), dtype=dtype.newbyteorder("<"))
    if is_bf16:  # the upper half of a float32 is a bfloat16: widen by shifting the bits, no rounding
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw


def read_torch_zip(path: str | Path) -> dict[str, np.ndarray]:
    """{name: array} of a ``torch.save``'d state dict (zip format), read without unpickling."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise SenetZooError(path, f"cannot read ({e.strerror or e})") from None
    if head == LEGACY_MAGIC:
        raise SenetZooError(path, "a torch checkpoint in the legacy (pre-1.6) format, which senet-zoo does not read "
                            "without unpickling; use the model.safetensors of the same weights (timm's Hub "
                            "repository has one: --timm-weights timm/legacy_seresnet50.in1k), or re-save it "
                            "with torch.save in a trusted environment")
    if head != ZIP_MAGIC:
        raise SenetZooError(path, "not a torch checkpoint (neither the zip format of torch.save nor safetensors)")
    try:
        with zipfile.ZipFile(path) as zf:
            return _read(zf, path.stat().st_size)
    except _Refused as e:
        raise SenetZooError(path, f"refused: {e}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError, ValueError,
            NotImplementedError) as e:
        first = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise SenetZooError(path, f"not a readable torch zip archive ({first})") from None


def _read(zf: zipfile.ZipFile, archive_size: int) -> dict[str, np.ndarray]:
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _Refused(f"{len(infos)} archive entries (at most {MAX_ENTRIES})")
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename in by_name:
            raise _Refused(f"archive entry {info.filename!r:.80} appears twice")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _Refused(f"archive entry {info.filename!r:.80} is compressed; torch.save stores entries as they are")
        # sizes from the directory are checked before a read trusts them (a read allocates what it is asked)
        if info.compress_size != info.file_size or info.file_size > archive_size:
            raise _Refused(f"archive entry {info.filename!r:.80} declares {info.file_size} bytes "
                           f"({info.compress_size} stored) in a file of {archive_size}")
        by_name[info.filename] = info
    pickles = [n for n in by_name if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise _Refused(f"{len(pickles)} top-level data.pkl entries (a torch.save archive has one)")
    prefix = pickles[0][: -len("data.pkl")]
    order = by_name.get(prefix + "byteorder")
    if order is not None and zf.read(order) != b"little":
        raise _Refused("big-endian data")
    info = by_name[pickles[0]]
    if info.file_size > MAX_PICKLE_BYTES:
        raise _Refused(f"data.pkl of {info.file_size} bytes (at most {MAX_PICKLE_BYTES})")
    obj, storages = parse_pickle(zf.read(info))
    tensors = _flatten(obj)
    arrays: dict[str, np.ndarray] = {}
    for key, storage in storages.items():
        entry = by_name.get(f"{prefix}data/{key}")
        if entry is None:
            raise _Refused(f"storage {key} is missing from the archive")
        arrays[key] = _storage_array(zf, entry, storage)
    # Tensors may share a storage (tied weights); what they copy out is bounded by a few times what was read.
    budget = OUTPUT_FACTOR * sum(a.nbytes for a in arrays.values()) + (1 << 20)
    wanted = sum(_numel(t.size) * arrays[t.storage.key].itemsize for t in tensors.values())
    if wanted > budget:
        raise _Refused(f"its tensors would copy {wanted} bytes out of {budget // OUTPUT_FACTOR} bytes of storage")
    out: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        base = arrays[t.storage.key]
        item = base.itemsize
        if 0 in t.size:
            out[name] = np.zeros(t.size, base.dtype)
            continue
        view = np.lib.stride_tricks.as_strided(base[t.offset:], shape=t.size,
                                               strides=tuple(s * item for s in t.stride))
        out[name] = np.array(view, copy=True)   # contiguous, independent of the storage
    return out
