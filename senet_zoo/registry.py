"""The registry of released models, read from ``checkpoints.yaml`` (repo root, shipped in the wheel).

A model's published numbers, release file names, hashes, evaluation settings and Hub location all live
in that one file; this module only parses it into typed records.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import SenetZooError


@dataclass(frozen=True)
class Published:
    top1_err: float
    top5_err: float
    img_size: int
    source: str
    gflops: float | None = None


@dataclass(frozen=True)
class EvalSetting:
    img_size: int
    resize: int
    published: str = "release"  # key into Checkpoint.published


@dataclass(frozen=True)
class Checkpoint:
    name: str
    display_name: str
    architecture: str
    timm_architecture: str | None
    prototxt: str
    caffemodel: str
    caffemodel_bytes: int | None
    caffemodel_sha256: str | None
    published: dict[str, Published]
    eval: tuple[EvalSetting, ...]
    hub_repo_id: str | None
    hub_revision: str | None
    hub_sha256: str | None
    tolerance_pp: float
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def eval_setting(self, img_size: int) -> EvalSetting | None:
        return next((e for e in self.eval if e.img_size == img_size), None)

    def published_for(self, img_size: int) -> Published | None:
        setting = self.eval_setting(img_size)
        return None if setting is None else self.published.get(setting.published)


def _parse(name: str, entry: dict[str, Any], defaults: dict[str, Any]) -> Checkpoint:
    release = entry["release"]
    hub = entry.get("hub") or {}
    published = {
        key: Published(
            top1_err=float(p["top1_err"]), top5_err=float(p["top5_err"]), img_size=int(p["img_size"]),
            source=str(p["source"]), gflops=p.get("gflops"),
        )
        for key, p in entry["published"].items()
    }
    evals = tuple(
        EvalSetting(img_size=int(e["img_size"]), resize=int(e["resize"]), published=e.get("published", "release"))
        for e in entry["eval"]
    )
    for e in evals:
        if e.published not in published:  # a verdict needs the numbers its setting names
            raise ValueError(f"{name}: eval img_size {e.img_size} names published '{e.published}', "
                             f"which the entry lacks ({', '.join(published) or 'none'})")
    return Checkpoint(
        name=name,
        display_name=entry["display_name"],
        architecture=entry["architecture"],
        timm_architecture=entry.get("timm_architecture"),
        prototxt=release["prototxt"],
        caffemodel=release["caffemodel"],
        caffemodel_bytes=release.get("caffemodel_bytes"),
        caffemodel_sha256=release.get("caffemodel_sha256"),
        published=published,
        eval=evals,
        hub_repo_id=hub.get("repo_id"),
        hub_revision=hub.get("revision"),
        hub_sha256=hub.get("sha256"),
        tolerance_pp=float(entry.get("tolerance_pp", defaults.get("tolerance_pp", 0.10))),
        raw=entry,
    )


# A registry other than the packaged one (tests of the Hub side; a maintainer preparing a release entry).
REGISTRY_ENV = "SENET_ZOO_REGISTRY"


def _load() -> dict[str, Checkpoint]:
    return _load_from(os.environ.get(REGISTRY_ENV) or None)


@functools.lru_cache(maxsize=None)
def _load_from(path: str | None) -> dict[str, Checkpoint]:
    if path is None:
        text = resources.files("senet_zoo").joinpath("data/checkpoints.yaml").read_text(encoding="utf-8")
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise SenetZooError(path, f"cannot read the registry named by ${REGISTRY_ENV} ({e.strerror})") from None
    try:
        doc = yaml.safe_load(text)
        return {name: _parse(name, entry, doc) for name, entry in doc["models"].items()}
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        raise SenetZooError(path or "checkpoints.yaml", f"not a valid registry ({type(e).__name__}: {e})") from None


def names() -> list[str]:
    return list(_load())


def get(name: str) -> Checkpoint:
    models = _load()
    if name not in models:
        raise SenetZooError(None, f"unknown model '{name}'; known models: {', '.join(models)}")
    return models[name]
