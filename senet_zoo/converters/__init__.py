"""Caffe → PyTorch conversion: Caffe file I/O (``caffe_io``), what each layer means (``caffe_layers``), the
release layout, convert and verify (against OpenCV's Caffe runtime, ``opencv_reference``).

May import ``models`` (the architectures the release maps onto), ``images`` (``verify`` feeds images) and the
base modules; never ``validation`` or ``hub``.
"""
