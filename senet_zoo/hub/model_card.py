"""The model card (``README.md``) of a pushed model: YAML metadata the Hub indexes, then provenance, the
published and reproduced numbers side by side, preprocessing, usage and citation.

Every number comes from the registry (published) or from the validation records (reproduced); nothing is
typed in here. The YAML is produced by ``huggingface_hub.ModelCardData`` so that the Hub parses it back.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .. import registry
from . import eval_results

if TYPE_CHECKING:
    from .gate import GateDecision

RELEASE_URL = "https://github.com/hujie-frank/SENet"
# The Hub links a model to its paper through this tag.
ARXIV_TAG = "arxiv:1709.01507"
# What a user installs; tests/test_wheel.py builds and installs exactly this distribution.
INSTALL_LINE = "pip install senet-zoo"
# The files a loader needs: snapshot_download would otherwise also fetch validation/*.npz.
LOAD_PATTERNS = ("config.json", "model.safetensors")
# Hub library for models timm cannot build (SE-BN-Inception has no timm twin). The Hub accepts any
# library name; this one says honestly which package loads the weights.
OWN_LIBRARY = "senet-zoo"

CITATION = """\
@article{hu2019senet,
  title   = {Squeeze-and-Excitation Networks},
  author  = {Hu, Jie and Shen, Li and Albanie, Samuel and Sun, Gang and Wu, Enhua},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume  = {42},
  number  = {8},
  pages   = {2011--2023},
  year    = {2020},
  note    = {Published online 2019},
  doi     = {10.1109/TPAMI.2019.2913372}
}

@inproceedings{hu2018senet,
  title     = {Squeeze-and-Excitation Networks},
  author    = {Hu, Jie and Shen, Li and Sun, Gang},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {7132--7141},
  year      = {2018}
}"""


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(record, key: str) -> str:
    ci = record.get("results", f"{key}_ci95")
    return f" [{ci[0]:.2f}, {ci[1]:.2f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def card_metadata(decision: "GateDecision", repo_id: str, file_names: dict | None = None,
                  endpoint: str | None = None) -> "ModelCardData":  # noqa: F821
    """The YAML header: ``huggingface_hub.ModelCardData`` for the plain keys, and our own ``model-index``
    list (``eval_results.model_index``: one result per setting, each linking its own record)."""
    from huggingface_hub import ModelCardData

    ckpt = registry.get(decision.model)
    timm_ok = ckpt.timm_architecture is not None
    tags = ["image-classification", "squeeze-and-excitation", "senet-zoo", "caffe-conversion", "safetensors",
            ARXIV_TAG]
    if timm_ok:
        tags.insert(1, "timm")
    meta = ModelCardData(
        license="apache-2.0",
        library_name="timm" if timm_ok else OWN_LIBRARY,
        tags=tags,
        datasets=[eval_results.DATASET_ID],
        metrics=["accuracy"],
        pipeline_tag="image-classification",
    )
    index = eval_results.model_index(decision, repo_id, file_names or {}, endpoint)
    if index:
        meta["model-index"] = index
    return meta


def _results_section(decision: "GateDecision") -> list[str]:
    ckpt = registry.get(decision.model)
    out = ["## ImageNet-1k validation: published and reproduced errors", ""]
    if not decision.accepted:
        out += ["No validation record vouches for these weights (see the warning above).", ""]
    for size, check in sorted(decision.accepted.items()):
        r = check.record
        setting = ckpt.eval_setting(size)
        title = f"### {size}×{size} centre crop (shorter side resized to {setting.resize if setting else '?'})"
        if check.comparison == "reference":
            title += ": compared with the reference runtime, not with the published errors"
        out += [title, "",
                "| | top-1 err (%) | top-5 err (%) |", "| --- | --- | --- |"]
        for pub in ckpt.published.values():
            if pub.img_size == size:
                out.append(f"| Published: {pub.source} | {_fmt(pub.top1_err)} | {_fmt(pub.top5_err)} |")
        if check.comparison == "reference":
            out.append(f"| Compared with: {r.published_source} | {_fmt(r.get('published', 'top1_err'))} | "
                       f"{_fmt(r.get('published', 'top5_err'))} |")
        n = r.num_images
        out.append(f"| **Reproduced here** (senet-zoo, {n:,} images, 95% CI) | **{_fmt(r.top1_err)}**"
                   f"{_ci(r, 'top1_err')} | **{_fmt(r.top5_err)}**{_ci(r, 'top5_err')} |")
        d1, d5 = r.get("delta", "top1_err"), r.get("delta", "top5_err")
        if d1 is not None and d5 is not None:
            out.append(f"| Reproduced − compared | {d1:+.2f} | {d5:+.2f} |")
        for c in (c for c in decision.timm_port if c.record.img_size == size):
            t = c.record
            out.append(f"| timm's `{ckpt.timm_architecture}` weights (Cadene's port), same harness, "
                       f"{t.get('preprocess', 'name')} preprocessing, {t.num_images:,} images | {_fmt(t.top1_err)}"
                       f"{_ci(t, 'top1_err')} | {_fmt(t.top5_err)}{_ci(t, 'top5_err')} |")
        out += ["", f"Verdict: **{r.verdict}** against *{check.published_label or r.published_source}* "
                f"(tolerance {r.get('tolerance_pp')} percentage points). Record: "
                f"[`validation/{r.path.name}`](validation/{r.path.name}).", ""]
        if check.comparison == "reference":
            out += ["> These numbers compare the conversion with the reference Caffe runtime on the same "
                    "images, not with the release's published errors.", ""]
    release, paper = ckpt.published.get("release"), ckpt.published.get("paper")
    if release and paper and (release.top1_err, release.top5_err) != (paper.top1_err, paper.top5_err):
        out += ["The release README's numbers are those of these exact caffemodels; the paper's come from "
                "models trained differently, so only the release numbers are a reproduction target.", ""]
    if decision.others:
        out += ["### Other evaluations of these weights", "",
                "| img size | preprocessing | precision | images | top-1 err (%) | top-5 err (%) | verdict | record |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for c in decision.others:
            r = c.record
            out.append(f"| {r.img_size} | {r.get('preprocess', 'name')} | {r.get('precision')} | {r.num_images:,} | "
                       f"{_fmt(r.top1_err)} | {_fmt(r.top5_err)} | {r.verdict} | `validation/{r.path.name}` |")
        out.append("")
    return out


def _provenance_section(decision: "GateDecision", file_names: dict) -> list[str]:
    ckpt = registry.get(decision.model)
    w = decision.weights
    if ckpt.caffemodel_sha256 is None:
        match = "the release's hash is not recorded anywhere we trust, so it cannot be checked"
    elif w.source_sha256 == ckpt.caffemodel_sha256:
        match = "the hash of the released file as recorded by OpenVINO's Open Model Zoo"
    else:
        match = f"**not** the released file, whose sha256 is `{ckpt.caffemodel_sha256}`"
    out = ["## Provenance", "",
           f"- Release: [{RELEASE_URL}]({RELEASE_URL}), file `{w.source_file}`, sha256 `{w.source_sha256}` "
           f"({match}).",
           f"- Converted by senet-zoo, converter version `{w.converter_version}`: every tensor comes from a "
           f"caffemodel blob and every blob is used; class order "
           f"`{w.metadata.get('class_order', w.config.get('senet_zoo', {}).get('class_order'))}` "
           "(the caffemodels answer in ILSVRC2012 devkit order; the classifier rows are permuted so that "
           "logits follow sorted WordNet IDs, like torchvision and timm).",
           f"- Weights: `model.safetensors`, {w.size:,} bytes, {w.num_tensors} tensors, sha256 `{w.sha256}`."]
    for r in decision.records:
        if r.is_timm_port:
            w_ = r.get("weights") or {}
            out.append(f"- timm's port, validation `validation/{file_names.get(id(r), r.path.name)}`: checkpoint "
                       f"`{w_.get('timm_weights')}` (sha256 `{w_.get('sha256')}`), normalised with mean "
                       f"{r.get('preprocess', 'mean')} and std {r.get('preprocess', 'std')} "
                       f"({w_.get('normalisation_from')}); same images and harness as this conversion's record.")
            continue
        env = r.get("environment") or {}
        pre = r.get("preprocess") or {}
        data = r.get("data") or {}
        hw = env.get("gpu") or env.get("device") or "?"
        sw = ", ".join(f"{k} {env[k]}" for k in ("torch", "cuda", "cudnn") if env.get(k))
        out.append(
            f"- Validation `validation/{file_names.get(id(r), r.path.name)}` ({r.created[:10] or 'undated'}): "
            f"{r.get('data', 'num_images') or r.num_images:,} images ({data.get('layout', '?')} layout, labels from "
            f"{data.get('label_source', '?')}), preprocessing `{pre.get('name', '?')}`, {r.get('precision')}, "
            f"{hw} ×{env.get('world_size', 1)}, {sw}, senet-zoo {env.get('senet_zoo', '?')}; per-image top-5 "
            f"predictions in `validation/{r.get('predictions', 'file')}` (sha256 `{r.get('predictions', 'sha256')}`).")
    out.append("")
    return out


def timm_difference(name: str) -> list[str]:
    """What differs from timm's ``legacy_se*`` weights of the same caffemodel, why, and the commands that
    measure it (the card's section; the README says the same)."""
    ckpt = registry.get(name)
    arch = ckpt.timm_architecture
    hub_id = f"timm/{arch}.in1k"
    return [
        f"## Compared with timm's `{arch}` weights", "",
        f"timm's `{arch}` weights are a 2018 port of the same caffemodel (Cadene's `pretrainedmodels`). The "
        "port declares RGB input in [0, 1] normalised with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, "
        "0.224, 0.225), where the release was trained on BGR 0–255 minus (104, 117, 123) with no std. To fit, "
        "its first convolution's input channels are reversed (BGR → RGB) and scaled by 255 · std; the mean "
        "difference (255 · mean − (123, 117, 104) = (0.675, −0.720, −0.470) on the 0–255 scale) can only be "
        "absorbed by the first BatchNorm, and exactly only away from the zero-padded border. These weights keep "
        "every caffemodel tensor as it is (conv1's channels reversed, classifier rows in sorted-wnid order) and "
        "say Caffe's own normalisation in `config.json`, so with Caffe's preprocessing they compute what Caffe "
        "computes.", "",
        "Measure it yourself: tensor by tensor (identical, equal up to the input fold, BatchNorm folding, or "
        "different with the largest difference), and on your copy of the validation set with the same images "
        "and harness as this card's numbers:", "",
        "```", f"pip install senet-zoo",
        f"senet-zoo compare {name} --timm-weights {hub_id}",
        f"senet-zoo validate --model {name} --timm-weights {hub_id} --data /path/to/ILSVRC2012_img_val", "```", ""]


def _preprocessing_section(decision: "GateDecision") -> list[str]:
    ckpt = registry.get(decision.model)
    sizes = ", ".join(f"shorter side {e.resize} → centre crop {e.img_size}" for e in ckpt.eval)
    return [
        "## Preprocessing", "",
        f"The published errors were measured with Caffe's preprocessing, which is what reproduces them: decode "
        f"with OpenCV (BGR), bilinear resize of the shorter side without antialiasing, centre crop ({sizes}), "
        "subtract the BGR mean (104, 117, 123), no scaling. senet-zoo's `validate` implements exactly that "
        "(`caffe` preprocessing).", "",
        "The model takes RGB input in [0, 1] normalised with the `mean` (123, 117, 104)/255 and `std` 1/255 of "
        "`config.json`, which is Caffe's input; the channel order is restored inside the first convolution. "
        "timm's default PIL pipeline (`resolve_data_config` + `create_transform`: PIL decode, antialiased "
        "resize by `crop_pct` 0.875) differs slightly from Caffe's, so its errors differ slightly from the "
        "numbers above.", ""]


@functools.lru_cache(maxsize=None)
def _complexity(name: str):
    """Counted once per process: building and tracing the model costs seconds (SENet-154)."""
    from ..models.complexity import complexity

    return complexity(name, 224)


def _details_section(decision: "GateDecision") -> list[str]:
    """Parameters, multiply-adds and input sizes, as timm's own cards give them (``senet-zoo info``)."""
    ckpt = registry.get(decision.model)
    c = _complexity(decision.model)
    paper = ckpt.published.get("paper")
    sizes = ", ".join(f"{e.img_size} × {e.img_size}" for e in ckpt.eval)
    rows = ["## Model details", "", "| | |", "| --- | --- |",
            f"| Parameters | {c.parameters / 1e6:.2f} M ({c.parameters:,}) |",
            f"| GMACs (multiply-adds at 224 × 224) | {c.gmacs:.2f}"
            + (f" (paper: {paper.gflops:.2f} GFLOPs, which are multiply-adds)" if paper and paper.gflops else "")
            + " |",
            f"| Image size | {sizes} (evaluation); trained at 224 × 224 |",
            f"| Architecture | {ckpt.timm_architecture or ckpt.architecture} |",
            f"| Paper | [Squeeze-and-Excitation Networks](https://arxiv.org/abs/1709.01507) |", "",
            "Multiply-adds count convolutions and fully connected layers, the paper's convention "
            f"(`senet-zoo info {decision.model}`).", ""]
    return rows


def _overlay_literal(name: str) -> str:
    from ..models.config import pretrained_cfg_overlay

    o = pretrained_cfg_overlay(name)
    assert o["std"] == (o["std"][0],) * 3  # written as one value
    return (f"mean=(123 / 255, 117 / 255, 104 / 255), std=(1 / 255,) * 3, "
            f'interpolation="{o["interpolation"]}", crop_pct={o["crop_pct"]}, crop_mode="{o["crop_mode"]}"')


def _usage_section(decision: "GateDecision", repo_id: str) -> list[str]:
    ckpt = registry.get(decision.model)
    name = decision.model
    patterns = "[" + ", ".join(f'"{p}"' for p in LOAD_PATTERNS) + "]"
    out = ["## Usage", "", f"With senet-zoo (`{INSTALL_LINE}`):", "", "```python", "import senet_zoo", "",
           f'model = senet_zoo.create_model("{name}", pretrained=True)',
           f"# downloads the revision pinned in senet-zoo's checkpoints.yaml and checks its sha256",
           f"# ({decision.weights.sha256}) before loading; works offline (HF_HUB_OFFLINE=1) from the cache",
           'print(model.pretrained_cfg["mean"], model.pretrained_cfg["std"])  # (123, 117, 104)/255 and 1/255',
           "```", "", "or from this repository directly (only the two files the model needs):", "", "```python",
           "from huggingface_hub import snapshot_download", "import senet_zoo", "",
           f'folder = snapshot_download("{repo_id}", allow_patterns={patterns})',
           f'model = senet_zoo.create_model("{name}", pretrained=folder)', "```", ""]
    if ckpt.timm_architecture:
        out += ["With [timm](https://github.com/huggingface/pytorch-image-models) (architecture "
                f"`{ckpt.timm_architecture}`, same outputs). `hf-hub:` reads this repository's `config.json`, "
                "so timm preprocesses as below (mean (123, 117, 104)/255, std 1/255, bilinear, crop 0.875):", "",
                "```python", "import timm", "import torch", "from PIL import Image", "",
                f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()',
                "config = timm.data.resolve_data_config({}, model=model)",
                "transform = timm.data.create_transform(**config)  # PIL pipeline, see Preprocessing",
                'image = Image.open("photo.jpg").convert("RGB")  # any photo',
                "with torch.no_grad():",
                "    top5 = model(transform(image).unsqueeze(0)).softmax(-1).topk(5)",
                'labels = model.pretrained_cfg["label_names"]  # WordNet IDs in output order',
                'names = model.pretrained_cfg["label_descriptions"]  # WordNet ID -> class name',
                "print([(labels[i], names[labels[i]], round(float(p), 3)) "
                "for p, i in zip(top5.values[0], top5.indices[0])])",
                "```", "",
                f"**Careful with the plain name** `{ckpt.timm_architecture}`: timm's own `pretrained_cfg` for it "
                "carries timm's ImageNet mean/std (0.485/0.229), which silently runs these weights on wrongly "
                "normalised input. Pass this repository's preprocessing with the file "
                f"(`senet_zoo.pretrained_cfg_overlay(\"{name}\", file=...)` gives the same dict):", "",
                "```python", "import timm", "from huggingface_hub import hf_hub_download", "",
                f'file = hf_hub_download("{repo_id}", "model.safetensors")',
                f'model = timm.create_model("{ckpt.timm_architecture}", pretrained=True, pretrained_cfg_overlay=dict(',
                f"    file=file, {_overlay_literal(name)})).eval()",
                "print(timm.data.resolve_data_config({}, model=model))", "```", ""]
    else:
        out += [f"timm has no {ckpt.display_name} architecture; load it with senet-zoo.", ""]
    out += ["Labels: `config.json` `label_names` holds the 1000 WordNet IDs in output order and "
            "`label_descriptions` their names (WordNet lemmas, as timm's `ImageNetInfo` gives them).", ""]
    return out


def render_model_card(decision: "GateDecision", repo_id: str, file_names: dict | None = None,
                      endpoint: str | None = None) -> str:
    """The README.md text; ``file_names`` maps ``id(record)`` to its name under ``validation/``;
    ``endpoint``: the Hub the links point to (default: huggingface_hub's, ``HF_ENDPOINT``)."""
    ckpt = registry.get(decision.model)
    file_names = file_names or {}
    meta = card_metadata(decision, repo_id, file_names, endpoint)
    lines = ["---", meta.to_yaml(), "---", "",
             f"# {ckpt.display_name}: the Caffe release, converted to PyTorch", "",
             f"The released Caffe weights of **{ckpt.display_name}** ([{RELEASE_URL}]({RELEASE_URL})), "
             "converted exactly to PyTorch (safetensors) by senet-zoo and re-validated on the ImageNet-1k "
             "validation set against the published errors.", ""]
    if decision.forced_reason:
        lines += ["> **Warning: published without passing senet-zoo's validation gate.**",
                  f"> Reason given: {decision.forced_reason}",
                  f"> The gate said: {decision.refusal or 'nothing (it passed)'}", ""]
    lines += _details_section(decision)
    lines += _results_section(decision)
    lines += _provenance_section(decision, file_names)
    lines += _preprocessing_section(decision)
    lines += _usage_section(decision, repo_id)
    if ckpt.timm_architecture:
        lines += timm_difference(decision.model)
    lines += ["## Citation", "", "```bibtex", CITATION, "```", "",
              "License: the release is Apache-2.0; so are these converted weights.", ""]
    return "\n".join(lines)
