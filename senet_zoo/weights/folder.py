"""The converted folder as every later stage reads it: ``model.safetensors`` + ``config.json``.

``resolve_weights`` turns what a user passes (a folder, or a ``model.safetensors`` path) into the two files;
``read_weights`` checks that a folder is complete and one conversion's (header intact, config and metadata
agreeing on the model, converter version and source hash) without loading a tensor, which is what the
push gate, ``list`` and the verified download need.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import jsonio, registry
from ..errors import SenetZooError
from ..files import sha256_file

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class WeightsInfo:
    dir: Path
    model: str
    sha256: str
    size: int
    num_tensors: int
    metadata: dict[str, str]
    config: dict[str, Any]

    @property
    def weights_path(self) -> Path:
        return self.dir / WEIGHTS_FILE

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def converter_version(self) -> str | None:
        return self.metadata.get("converter_version")

    @property
    def source_sha256(self) -> str | None:
        return self.metadata.get("source_sha256") or self.config.get("senet_zoo", {}).get("source_sha256")

    @property
    def source_file(self) -> str | None:
        return self.config.get("senet_zoo", {}).get("source_file") or self.metadata.get("source_file")


def read_safetensors_header(path: Path) -> tuple[dict[str, str], int]:
    """(``__metadata__``, number of tensors), checking that the file is complete; torch is not needed."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n <= 0 or n > min(size - 8, 100 << 20):
            raise SenetZooError(path, "not a safetensors file (bad header length)")
        try:
            header = jsonio.loads(f.read(n))
        except ValueError:
            raise SenetZooError(path, "not a safetensors file (header is not JSON)") from None
    metadata = header.pop("__metadata__", None) or {} if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SenetZooError(path, "not a safetensors file (header or __metadata__ is not a JSON object of strings)")
    try:
        end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise SenetZooError(path, "not a safetensors file (bad tensor entry)") from None
    if 8 + n + end != size:
        raise SenetZooError(path, f"truncated or padded: {size} bytes, the header describes {8 + n + end}")
    return dict(metadata), len(header)


def read_weights(weights_dir: str | Path, name: str, sha256: str | None = None) -> WeightsInfo:
    """A converted folder, checked to be complete, self-consistent and of model ``name`` (``sha256``: the
    weights' hash when the caller has just computed it)."""
    d = Path(weights_dir)
    weights, config_path = d / WEIGHTS_FILE, d / CONFIG_FILE
    if not d.is_dir():
        raise SenetZooError(d, "no such converted folder (senet-zoo convert --model "
                            f"{name} --caffemodel ... --output {d})")
    for p in (weights, config_path):
        if not p.is_file():
            raise SenetZooError(p, "missing: a converted folder holds model.safetensors and config.json")
    metadata, num_tensors = read_safetensors_header(weights)
    try:
        config = jsonio.load_path(config_path)
    except (OSError, ValueError) as e:
        raise SenetZooError(config_path, f"not valid JSON ({e})") from None
    ours = config.get("senet_zoo") if isinstance(config, dict) else None
    if not isinstance(ours, dict) or "pretrained_cfg" not in config or "architecture" not in config:
        raise SenetZooError(config_path, "not a senet-zoo config.json (needs architecture, pretrained_cfg, senet_zoo)")
    for what, value in (("config.json", ours.get("model")), ("safetensors metadata", metadata.get("model"))):
        if value != name:
            raise SenetZooError(d, f"holds weights of {value!r} ({what}), not {name!r}")
    ckpt = registry.get(name)
    if config["architecture"] != (ckpt.timm_architecture or ckpt.architecture):
        raise SenetZooError(config_path, f"architecture {config['architecture']!r} is not "
                            f"{ckpt.timm_architecture or ckpt.architecture!r}")
    for key in ("converter_version", "source_sha256"):
        if ours.get(key) != metadata.get(key):
            raise SenetZooError(d, f"config.json and model.safetensors disagree on {key} "
                                f"({ours.get(key)} vs {metadata.get(key)}): not from one conversion")
    return WeightsInfo(d, name, sha256 or sha256_file(weights), weights.stat().st_size, num_tensors, metadata,
                       config)


def resolve_weights(path: str | Path) -> tuple[Path, Path | None]:
    """(model.safetensors, config.json or None) for a converted folder or a direct safetensors path."""
    path = Path(path)
    if path.is_dir():
        weights, config = path / WEIGHTS_FILE, path / CONFIG_FILE
        if not weights.is_file():
            raise SenetZooError(path, f"no {WEIGHTS_FILE} here (convert the release first: senet-zoo convert)")
        return weights, config if config.is_file() else None
    if not path.is_file():
        raise SenetZooError(path, "no such file or directory")
    config = path.with_name(CONFIG_FILE)
    return path, config if config.is_file() else None
