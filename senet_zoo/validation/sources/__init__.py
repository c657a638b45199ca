"""Where the evaluation images' bytes come from: one reader per way users hold the validation set.

Every reader has the same contract: ``kind``; ``len(reader)`` images in the evaluation set's (sorted) name
order; ``read(i) -> bytes``, the encoded image exactly as extracting the source would give it; ``identity()``
and ``members()``, what a cache or a record binds to; ``where(i)``, what an error names. Readers are pickled
into DataLoader workers, so they hold plain data and open their files lazily, once per process. Sources that
carry labels (WebDataset ``.cls``, the parquet ``label`` column) hand them over beside the names.

* ``factory``: ``open_source(--data)``, detected by content: which reader, which names, which labels;
* ``layout``: flat vs ImageFolder, from a folder or a list of archive members;
* ``folder``, ``tar``, ``wds``, ``parquet``: the readers; ``hf``: ``hf://datasets/...`` fetched through
  huggingface_hub and verified in its cache (online or offline), then read as parquet or WebDataset shards;
* ``pack``: writes an image folder as a tar, WebDataset shards or parquet (tests, benchmarks).

May import the base modules and ``images``; nothing of ``validation`` above it.
"""
