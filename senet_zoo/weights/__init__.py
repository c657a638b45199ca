"""Where a model's converted weights come from: a local converted folder, or the pinned, sha256-verified Hub
download.

* ``folder``: the converted folder's two files (``resolve_weights``) and their consistency (``read_weights``,
  ``WeightsInfo``), read without torch;
* ``download``: ``fetch_weights(name, revision)``: the registry's pinned Hub commit, verified before use.

Used by ``models`` (``create_model(pretrained=True)``), ``validation`` (default weights) and ``hub`` (the push
gate, ``download``, ``list``). May import only the base modules (``errors``, ``files``, ``jsonio``,
``registry``, ``hf_errors``); huggingface_hub is imported inside the functions that download.
"""
