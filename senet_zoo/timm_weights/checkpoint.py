"""A timm ``legacy_se*`` checkpoint, opened as arrays: a local ``.safetensors``, a ``torch.save`` file (read
by ``torch_zip`` without unpickling), a folder holding one (a Hub snapshot, ``local-dir:``), or a Hub model
id (``hf-hub:timm/legacy_seresnet50.in1k``, ``timm/legacy_seresnet50.in1k[@REVISION]``) fetched with
huggingface_hub, so its cache and ``HF_HUB_OFFLINE=1`` apply.

Alongside the tensors: the input normalisation the checkpoint is used with. A timm Hub repository says it in
its ``config.json``; a bare file does not, and then it is timm's own ``pretrained_cfg`` for the
``legacy_se*`` weights (ImageNet mean/std, as Cadene's ``pretrainedmodels`` declared them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import jsonio
from ..errors import SenetZooError
from ..files import sha256_file
from ..weights.folder import CONFIG_FILE, WEIGHTS_FILE, read_safetensors_header
from .torch_zip import read_torch_zip

# timm's pretrained_cfg of every legacy_se*.in1k weight (timm/models/senet.py: IMAGENET_DEFAULT_MEAN/STD):
# what timm normalises these weights' input with; tests/test_timm_weights.py holds them to timm's own.
TIMM_MEAN = (0.485, 0.456, 0.406)
TIMM_STD = (0.229, 0.224, 0.225)
TORCH_FILES = ("pytorch_model.bin",)
_HUB_ID = re.compile(r"(?:hf-hub:)?(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<rev>[\w./-]+))?")


@dataclass
class TimmCheckpoint:
    state: dict[str, np.ndarray]
    file: Path                       # the file the tensors were read from
    sha256: str
    source: str                      # what names it: the path, or repo@commit on the Hub
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    normalisation_from: str          # "config.json" or "timm's legacy_se* pretrained_cfg"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    read_safetensors_header(path)   # bounded header, complete file, before the library maps it
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise SenetZooError(path, f"not a readable safetensors file ({str(e).splitlines()[0][:100]})") from None


def read_state(path: Path) -> dict[str, np.ndarray]:
    """The tensors of one checkpoint file, by its content (safetensors, or torch.save's zip)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise SenetZooError(path, f"cannot read ({e.strerror or e})") from None
    return read_torch_zip(path) if head.startswith(b"PK") or head.startswith(b"\x80") else read_safetensors(path)


def _normalisation(config: Path | None) -> tuple[tuple, tuple, str]:
    if config is not None and config.is_file():
        try:
            cfg = jsonio.load_path(config)
        except (OSError, ValueError) as e:
            raise SenetZooError(config, f"not valid JSON ({e})") from None
        pre = cfg.get("pretrained_cfg", cfg) if isinstance(cfg, dict) else None
        mean, std = (pre.get("mean"), pre.get("std")) if isinstance(pre, dict) else (None, None)
        if _triple(mean) and _triple(std) and all(s > 0 for s in std):
            return tuple(map(float, mean)), tuple(map(float, std)), CONFIG_FILE
    return TIMM_MEAN, TIMM_STD, "timm's legacy_se* pretrained_cfg"


def _triple(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in x)


def _in_folder(folder: Path) -> Path:
    for name in (WEIGHTS_FILE, *TORCH_FILES):
        if (folder / name).is_file():
            return folder / name
    raise SenetZooError(folder, f"holds no {WEIGHTS_FILE} or {TORCH_FILES[0]}")


def _from_hub(spec: str, endpoint: str | None, cache_dir: str | Path | None) -> tuple[Path, Path | None, str]:
    from ..weights.download import hub_file

    m = _HUB_ID.fullmatch(spec)
    if m is None:
        raise SenetZooError(spec, "no such file or folder, and not a Hub model id (ORG/NAME[@REVISION])")
    repo, rev = m.group("repo"), m.group("rev")
    try:
        weights = hub_file(repo, WEIGHTS_FILE, rev, endpoint=endpoint, cache_dir=cache_dir)
    except SenetZooError as e:
        if "is not in this revision" not in e.message:
            raise
        weights = hub_file(repo, TORCH_FILES[0], rev, endpoint=endpoint, cache_dir=cache_dir)
    commit = weights.parent.name
    try:
        config = hub_file(repo, CONFIG_FILE, commit, endpoint=endpoint, cache_dir=cache_dir)
    except SenetZooError:
        config = None   # a repository without config.json: timm's defaults
    return weights, config, f"{repo}@{commit}"


def open_checkpoint(spec: str | Path, *, endpoint: str | None = None,
                    cache_dir: str | Path | None = None) -> TimmCheckpoint:
    """The checkpoint ``spec`` names: a local file or folder first, else a Hub model id."""
    path = Path(spec)
    if str(spec).startswith("hf-hub:") or not path.exists():
        file, config, source = _from_hub(str(spec), endpoint, cache_dir)
    else:
        file = _in_folder(path) if path.is_dir() else path
        config, source = file.with_name(CONFIG_FILE), str(path)
    state = read_state(file)
    mean, std, origin = _normalisation(config)
    return TimmCheckpoint(state, file, sha256_file(file), source, mean, std, origin)
