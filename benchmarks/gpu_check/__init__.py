"""The device check's parts (``benchmarks/gpu_validate.py`` is the entry): ``budget`` runs steps under a time
budget and survives being stopped, ``loader_plan`` picks workers and batch from the machine, ``steps`` measures,
``table`` prints what was measured."""
