"""``--data hf://datasets/OWNER/NAME[@REVISION]``: the validation parquet files of a Hub dataset repo.

The files (``validation-*.parquet`` anywhere in the repo, e.g. imagenet-1k's ``data/validation-00000-of-00014
.parquet``) are listed from the repo's info at REVISION (default ``main``, resolved to one commit) and fetched
through ``huggingface_hub.hf_hub_download`` into its usual cache (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_TOKEN``,
``HF_ENDPOINT`` apply), then read as local parquet files. ImageNet's repos are gated: without a token that has
accepted the dataset's terms the Hub answers 401, said here in one line (the token itself is never printed).
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from ...errors import SenetZooError
from ...hf_errors import one_line

PREFIX = "hf://datasets/"
SPLIT_PATTERN = "validation-*.parquet"
_URI = re.compile(r"hf://datasets/([\w.-]+/[\w.-]+)(?:@([\w./-]+))?/?")


def is_hf_uri(data: str) -> bool:
    return str(data).startswith("hf://")


def parse(uri: str) -> tuple[str, str]:
    m = _URI.fullmatch(uri)
    if m is None:
        raise SenetZooError(uri, "expected hf://datasets/OWNER/NAME or hf://datasets/OWNER/NAME@REVISION")
    return m.group(1), m.group(2) or "main"


def download(uri: str) -> tuple[list[Path], str]:
    """(local parquet files of the validation split, ``hf://datasets/OWNER/NAME@COMMIT``)."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
        RevisionNotFoundError)

    repo_id, revision = parse(uri)
    where = f"{PREFIX}{repo_id}@{revision}"
    try:
        info = HfApi(library_name="senet-zoo").dataset_info(repo_id, revision=revision)
        commit = info.sha
        files = sorted(s.rfilename for s in info.siblings or []
                       if fnmatch.fnmatch(s.rfilename.rsplit("/", 1)[-1], SPLIT_PATTERN))
        if not files:
            raise SenetZooError(where, f"holds no {SPLIT_PATTERN} files (the validation split in the Hub's parquet "
                                "layout, e.g. data/validation-00000-of-00014.parquet)")
        local = [Path(hf_hub_download(repo_id, f, repo_type="dataset", revision=commit, library_name="senet-zoo"))
                 for f in files]
    except SenetZooError:
        raise
    except GatedRepoError:
        raise SenetZooError(where, "the dataset is gated: a Hugging Face token that has accepted its terms is "
                            "needed (hf auth login, or set HF_TOKEN)") from None
    except RepositoryNotFoundError as e:
        raise SenetZooError(where, f"dataset not found or not accessible ({one_line(e)}); gated datasets need a "
                            "token (hf auth login, or set HF_TOKEN)") from None
    except RevisionNotFoundError as e:
        raise SenetZooError(where, f"revision not found ({one_line(e)})") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as e:
        raise SenetZooError(where, f"the Hub cannot be reached ({one_line(e)})") from None
    except HfHubHTTPError as e:
        if getattr(getattr(e, "response", None), "status_code", None) == 401:
            raise SenetZooError(where, "the Hub refused the request (401): a Hugging Face token that has accepted "
                                "the dataset's terms is needed (hf auth login, or set HF_TOKEN)") from None
        raise SenetZooError(where, f"download failed ({one_line(e)})") from None
    except Exception as e:  # connection errors of the HTTP client, whatever its version calls them
        raise SenetZooError(where, f"download failed ({one_line(e)})") from None
    return local, f"{PREFIX}{repo_id}@{commit}"
