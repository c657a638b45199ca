"""Reading and writing Caffe files (interim: the module moved whole into ``binary``; split by job next)."""
from .binary import *  # noqa: F401,F403
from .binary import MAX_LAYERS, _encode_varint, _fields, _layer_message, is_hdf5  # noqa: F401
