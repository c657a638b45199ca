"""The evaluation results the Hub reads, from the records the gate accepted: the card's ``model-index`` and
one ``.eval_results/imagenet-1k-SIZE.yaml`` per published setting.

Both say the same thing in the Hub's two formats:

* ``model-index`` (https://github.com/huggingface/hub-docs/blob/main/modelcard.md, parsed by
  ``huggingface_hub.repocard_data.model_index_to_eval_results``): one result per setting, dataset
  ``ILSVRC/imagenet-1k`` split ``validation`` (with the dataset ``revision`` when the record read the images
  from that repository on the Hub), metrics of the Hub id ``accuracy``, top-5 named as such with
  ``args: {k: 5}`` (the Hub's metric list has no top-k id), and a ``source`` naming and linking the record
  file of this repository. It is written as a list, not through ``ModelCardData(eval_results=...)``: that
  merges every result of one dataset and split into one, keeping the first one's source, so SENet-154's
  320 numbers would have pointed at the 224 record.
* ``.eval_results/*.yaml`` (https://huggingface.co/docs/hub/eval-results, specification
  https://github.com/huggingface/hub-docs/blob/main/eval_results.yaml), serialised by huggingface_hub's own
  ``eval_result_entries_to_yaml``: one entry per value, each with the dataset id, a task id, the revision
  where known, the date of the run, the record as source, and the protocol in ``notes``.

ImageNet-1k is not a registered Hub benchmark (no ``eval.yaml`` with tasks), so no leaderboard can take these
entries yet; the task ids ``top1_accuracy`` / ``top5_accuracy`` name what each value is until it is.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .. import registry
from .records import Record

if TYPE_CHECKING:
    from .gate import GateDecision

DATASET_ID = "ILSVRC/imagenet-1k"
DATASET_NAME = "ImageNet-1k (ILSVRC2012 validation)"
SPLIT = "validation"
EVAL_RESULTS_DIR = ".eval_results"
TASK_IDS = {1: "top1_accuracy", 5: "top5_accuracy"}
# hf://datasets/OWNER/NAME@COMMIT, as validation's Hub source writes data.source_uri
_HF_URI = re.compile(r"hf://datasets/(?P<repo>[\w.-]+/[\w.-]+)@(?P<rev>[0-9a-f]{40})/?")


def dataset_revision(record: Record) -> str | None:
    """The ImageNet-1k repository's commit the record's images came from; None when they were not read from
    it (a local folder, tar or shards; another Hub dataset, whose commit is not one of this repository)."""
    uri = record.get("data", "source_uri")
    m = _HF_URI.fullmatch(uri) if isinstance(uri, str) else None
    return m.group("rev") if m and m.group("repo") == DATASET_ID else None


def record_url(repo_id: str, name: str, endpoint: str | None = None) -> str:
    """The Hub page of ``validation/NAME`` in ``repo_id`` (on ``endpoint``, default: huggingface_hub's)."""
    if endpoint is None:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    return f"{endpoint.rstrip('/')}/{repo_id}/blob/main/validation/{name}"


def _published_settings(decision: "GateDecision") -> list[tuple[int, Record]]:
    """(img_size, record) of each accepted ImageNet record; the stand-in's reference-runtime comparison
    makes no ImageNet claim, so it has none."""
    return [(size, c.record) for size, c in sorted(decision.accepted.items()) if c.comparison != "reference"]


def _accuracy(err: float) -> float:
    return round(100.0 - err, 2)


def _protocol(record: Record, size: int) -> str:
    ckpt = registry.get(record.model)
    setting = ckpt.eval_setting(size)
    pre = record.get("preprocess", "name") or "?"
    resize = f"shorter side resized to {setting.resize}, " if setting else ""
    return (f"{size}x{size} centre crop ({resize}{pre} preprocessing), {record.get('precision')}, "
            f"{record.num_images:,} images")


def model_index(decision: "GateDecision", repo_id: str, file_names: dict[int, str],
                endpoint: str | None = None) -> list[dict[str, Any]] | None:
    """The card's ``model-index`` (None when no record makes an ImageNet claim)."""
    results = []
    for size, r in _published_settings(decision):
        name = file_names.get(id(r), r.path.name)
        dataset: dict[str, Any] = {"name": DATASET_NAME, "type": DATASET_ID, "split": SPLIT}
        revision = dataset_revision(r)
        if revision:
            dataset["revision"] = revision
        crop = f"{size}x{size} centre crop"
        results.append({
            "task": {"type": "image-classification", "name": "Image Classification"},
            "dataset": dataset,
            "metrics": [
                {"type": "accuracy", "value": _accuracy(r.top1_err), "name": f"Top-1 accuracy ({crop})"},
                {"type": "accuracy", "value": _accuracy(r.top5_err), "name": f"Top-5 accuracy ({crop})",
                 "args": {"k": 5}},
            ],
            "source": {"name": f"senet-zoo validation record validation/{name}",
                       "url": record_url(repo_id, name, endpoint)},
        })
    return [{"name": repo_id.split("/")[-1], "results": results}] if results else None


def eval_result_files(decision: "GateDecision", repo_id: str, file_names: dict[int, str],
                      endpoint: str | None = None) -> dict[str, str]:
    """{path in the repository: YAML text} of one ``.eval_results`` file per published setting."""
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml
    from huggingface_hub.utils import yaml_dump

    files = {}
    for size, r in _published_settings(decision):
        name = file_names.get(id(r), r.path.name)
        entries = [
            EvalResultEntry(dataset_id=DATASET_ID, task_id=TASK_IDS[k], value=_accuracy(err),
                            dataset_revision=dataset_revision(r), date=r.created or None,
                            source_url=record_url(repo_id, name, endpoint),
                            source_name=f"senet-zoo validation record validation/{name}",
                            notes=f"top-{k} accuracy (%) on the {SPLIT} split, {_protocol(r, size)}")
            for k, err in ((1, r.top1_err), (5, r.top5_err))]
        files[f"{EVAL_RESULTS_DIR}/imagenet-1k-{size}.yaml"] = yaml_dump(
            eval_result_entries_to_yaml(entries), sort_keys=False, width=1000)   # one line per value
    return files
