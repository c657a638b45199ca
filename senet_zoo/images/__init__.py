"""Turning an image file into the model's input, shared by ``verify`` (converters) and ``validate``.

* ``preprocess``: the release's Caffe pipeline (OpenCV decode, INTER_LINEAR resize, integer centre crop) and
  timm's PIL pipeline; ``BadImage`` for anything a decoder refuses;
* ``image_size``: width x height read from a PNG/JPEG header before decoding (the pixel limit);
* ``decoder_messages``: libjpeg/libpng warnings caught from stderr as part of a bad image's reason.

May import only the base modules (``errors``, ``files``); cv2 and PIL are imported where an image is decoded.
"""
