"""The real ``huggingface_hub`` client, in-process, pointed at the local Hub (``hub_server.FakeHub``).

``client_settings`` sets what ``HF_ENDPOINT``/``HF_HUB_CACHE``/``HF_HUB_DISABLE_XET`` would set at import
time (the client reads them into ``constants`` once); ``upload`` makes one commit of a folder, as ``push``
does, and returns its sha; ``serving_dataset`` starts a local Hub holding one (gated) dataset repo, with the
client pointed at it and holding the token.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from .hub_fixtures import TOKEN
from .hub_server import FakeHub


def client_settings(monkeypatch, hub, cache: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def upload(hub, repo_id: str, folder: Path) -> str:
    import pytest
    from huggingface_hub import HfApi, constants

    with pytest.MonkeyPatch.context() as mp:  # the local Hub speaks Git LFS, not Xet
        mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(repo_id, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder)).oid


@contextlib.contextmanager
def serving_dataset(monkeypatch, cache: Path, repo_id: str, files: dict[str, bytes], gated: bool = True):
    """(the local Hub, the commit) of a dataset repo holding ``files``; ``cache`` is the client's Hub cache, and
    no token stored on this machine is read (only ``HF_TOKEN``)."""
    from huggingface_hub import constants

    with FakeHub(token=TOKEN) as hub:
        sha = hub.add_dataset(repo_id, files, gated=gated)
        client_settings(monkeypatch, hub, cache)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache.parent / "no-token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(cache.parent / "no-tokens"))
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        yield hub, sha
