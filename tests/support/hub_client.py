"""The real ``huggingface_hub`` client, in-process, pointed at the local Hub (``hub_server.FakeHub``).

``client_settings`` sets what ``HF_ENDPOINT``/``HF_HUB_CACHE``/``HF_HUB_DISABLE_XET`` would set at import
time (the client reads them into ``constants`` once); ``upload`` makes one commit of a folder, as ``push``
does, and returns its sha.
"""
from __future__ import annotations

from pathlib import Path

from .hub_fixtures import TOKEN


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
