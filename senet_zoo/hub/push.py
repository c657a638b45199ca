"""``senet-zoo push``: gate, stage, and upload the staged folder as one commit."""
from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .. import registry
from ..version import __version__
from ..errors import SenetZooError
from . import gate as gate_mod
from ..hf_errors import one_line, scrub
from .records import Record
from .stage import stage


def describe(decision: gate_mod.GateDecision, refusals: bool = True) -> list[str]:
    """The gate's verdict as log lines (``refusals=False`` when the caller's error line will say them)."""
    w = decision.weights
    lines = [f"weights: {w.weights_path} sha256 {w.sha256} (converter {w.converter_version})"]
    for size, c in sorted(decision.accepted.items()):
        r = c.record
        lines.append(f"gate {size}: {r.verdict} by {r.path} (top-1/top-5 err {r.top1_err:.2f}/{r.top5_err:.2f}"
                     f" vs {r.get('published', 'top1_err')}/{r.get('published', 'top5_err')}: "
                     f"{c.published_label or r.published_source})")
    lines += [f"gate: {note}" for note in decision.notes]
    if refusals:
        lines += [f"gate REFUSES: {why}" for why in decision.refusals]
    return lines


@contextlib.contextmanager
def _progress_bars(on: bool):
    """huggingface_hub's tqdm bars on or off for the upload, restored afterwards (they are global)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    from huggingface_hub import constants

    was_disabled = are_progress_bars_disabled()
    # HF_HUB_DISABLE_PROGRESS_BARS=1 is the user's own choice and wins (enabling would only warn).
    change = was_disabled == on and not (on and constants.HF_HUB_DISABLE_PROGRESS_BARS)
    if change:
        (enable_progress_bars if on else disable_progress_bars)()
    try:
        yield
    finally:
        if change:
            (disable_progress_bars if was_disabled else enable_progress_bars)()


def check_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise SenetZooError(None, f"--repo-id {repo_id!r}: {e}") from None
    if "/" not in repo_id:
        raise SenetZooError(None, f"--repo-id {repo_id!r}: give it as ORG/NAME")
    return repo_id


def push(name: str, weights_dir: str | Path, repo_id: str, records: list[Record], *, private: bool = False,
         dry_run: str | Path | None = None, force: bool = False, reason: str | None = None,
         endpoint: str | None = None, progress: bool | None = None,
         log: Callable[[str], None] = print) -> str | Path:
    """Push ``weights_dir`` as ``repo_id`` and return the commit sha; with ``dry_run``, write the folder
    that would be pushed there and return its path (no network, no token needed). ``progress``:
    huggingface_hub's upload bars, by default only when stderr is a terminal."""
    ckpt = registry.get(name)
    check_repo_id(repo_id)
    if force and not (reason and reason.strip()):
        raise SenetZooError(None, "--force needs --reason TEXT (it goes into the model card)")
    if reason and not force:
        raise SenetZooError(None, "--reason is only for --force")
    decision = gate_mod.evaluate(name, weights_dir, records)
    # A refusal without --force is said once, by the error line.
    for line in describe(decision, refusals=decision.passed or force):
        log(line)
    if not decision.passed:
        if not force:
            raise SenetZooError(weights_dir, f"refusing to push {ckpt.display_name}: {decision.refusal} "
                                "(override with --force --reason TEXT)", exit_code=gate_mod.GATE_REFUSED_EXIT)
        decision.forced_reason = reason.strip()
        log(f"--force: pushing anyway; the model card says so, with the reason: {decision.forced_reason}")
    elif force:
        log("--force: not needed, the gate passed; the reason is not used")

    if dry_run is not None:
        files = stage(decision, repo_id, dry_run, endpoint=endpoint)
        log(f"dry run: wrote {len(files)} files to {dry_run} ({', '.join(files)}); nothing uploaded")
        return Path(dry_run)

    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if progress is None:
        progress = sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix=".senet-zoo-push-") as tmp, _progress_bars(progress):
        folder = Path(tmp) / "stage"
        files = stage(decision, repo_id, folder, link=True, endpoint=endpoint)
        log(f"staged {len(files)} files: {', '.join(files)}")
        api = HfApi(endpoint=endpoint, library_name="senet-zoo", library_version=__version__)
        w = decision.weights
        try:
            url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            log(f"repo: {url}" + (" (private)" if private else ""))
            ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files]
            sizes = ", ".join(f"{s}: {decision.accepted[s].record.verdict}" for s in sorted(decision.accepted))
            info = api.create_commit(
                repo_id, ops, repo_type="model",
                commit_message=f"{ckpt.display_name} from the Caffe release (senet-zoo converter "
                               f"{w.converter_version})",
                commit_description=(f"model.safetensors sha256 {w.sha256}; validation: {sizes or 'none'}"
                                    + (f"; pushed with --force: {decision.forced_reason}"
                                       if decision.forced_reason else "")),
            )
        except HfHubHTTPError as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            hint = " (log in: set HF_TOKEN or run `hf auth login`)" if status in (401, 403) else ""
            raise SenetZooError(repo_id, f"upload failed: {one_line(e)}{hint}") from None
        except (OSError, ValueError, RuntimeError) as e:
            raise SenetZooError(repo_id, f"upload failed: {one_line(e)}") from None
    log(scrub(f"commit: {info.commit_url}"))
    log(f"pin it in checkpoints.yaml: hub: {{repo_id: {repo_id}, revision: {info.oid}, sha256: {w.sha256}}}")
    return info.oid
