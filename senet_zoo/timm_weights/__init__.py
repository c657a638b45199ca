"""timm's ``legacy_se*`` weights: Cadene's 2018 port of the same caffemodels, read and related to ours.

``torch_zip`` (a ``torch.save`` file read as data, never unpickled) and ``checkpoint`` (a file, a folder or
a Hub id, with the input normalisation it is used with) open it; ``relation`` says, tensor by tensor, how it
relates to this conversion; ``model`` builds it as a model for ``validate --timm-weights``; ``commands`` is
``senet-zoo compare``. It sits beside ``converters``: it reads converted weights and the model code, and
``validation`` uses it; it imports neither ``validation`` nor ``hub``.
"""
