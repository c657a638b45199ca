"""Reading and writing Caffe files without Caffe: text prototxt, binary caffemodel (V2 ``layer`` and legacy V1
``layers``) and HDF5 ``.caffemodel.h5``, all as one :class:`CaffeNet`. Every bad input raises
:class:`SenetZooError` naming the file; nothing is ever unpickled; writes are atomic.

One file per job, imports pointing down only:

- ``schema``: ``CaffeNet``/``CaffeLayer``, the readers' limits, the V1 -> V2 upgrade, messages <-> net;
- ``wire``: the bounded protobuf wire format (varints, fields) and its few encoders;
- ``sniff``: opening a user's file, and what a file is from its first bytes;
- ``binary``: the binary caffemodel reader (mmap + ``preadv``, legacy non-packed blobs);
- ``hdf5``: the ``.caffemodel.h5`` reader;
- ``caffemodel``: ``read_weights``/``probe_weights``, which pick the reader;
- ``writers``: binary (V2, V1) and HDF5 caffemodel writers, used by the synthetic release;
- ``prototxt``: text prototxt reading and writing.

The package may import ``senet_zoo.errors``, ``senet_zoo.files``, ``converters.caffe_pb2``, numpy, protobuf and
h5py, nothing else of senet_zoo. Callers use the names below; tests that need a private helper import it from its
module (``caffe_io.wire._fields``).
"""
from .caffemodel import probe_weights, read_weights
from .prototxt import read_prototxt, write_prototxt
from .schema import MAX_BLOBS_PER_LAYER, MAX_HDF5_DEPTH, MAX_LAYERS, CaffeLayer, CaffeNet, net_from_proto, net_to_proto
from .sniff import is_hdf5
from .writers import write_caffemodel, write_caffemodel_h5

__all__ = [
    "CaffeLayer", "CaffeNet", "read_prototxt", "read_weights", "write_caffemodel", "write_caffemodel_h5",
    "write_prototxt", "net_to_proto", "net_from_proto", "probe_weights", "is_hdf5", "MAX_LAYERS",
    "MAX_BLOBS_PER_LAYER", "MAX_HDF5_DEPTH",
]
