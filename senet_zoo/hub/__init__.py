"""Publishing validated weights on the Hugging Face Hub, and getting them back verified.

* ``gate``: which validation records vouch for a converted folder (``push`` refuses without one);
* ``stage``/``model_card``: the exact folder that is pushed (``push --dry-run DIR`` writes it);
* ``push``: one commit through ``huggingface_hub``;
* ``listing``/``report``: ``senet-zoo list`` and ``senet-zoo report``;
* ``commands``: ``push``, ``download`` (through ``weights.download``), ``list``, ``report``;
* ``demo``: the Hub stage of ``senet-zoo demo``.

The top layer but the CLI: may import ``validation`` (records), ``models``, ``weights`` and the base modules.
torch, timm, huggingface_hub and matplotlib are imported only inside the functions that need them.
"""
