"""Caffe → PyTorch conversion: Caffe file I/O (``caffe_io``), layer semantics, the release layout, convert/verify."""
