"""Publishing validated weights on the Hugging Face Hub, and getting them back verified.

* ``gate``: which validation records vouch for a converted folder (``push`` refuses without one);
* ``stage``/``model_card``: the exact folder that is pushed (``push --dry-run DIR`` writes it);
* ``push``: one commit through ``huggingface_hub``;
* ``download``: ``fetch_weights(name, revision)``, pinned by ``checkpoints.yaml`` and sha256-verified;
* ``listing``/``report``: ``senet-zoo list`` and ``senet-zoo report``;
* ``demo``: the Hub stage of ``senet-zoo demo``.

torch, timm, huggingface_hub and matplotlib are imported only inside the functions that need them.
"""
