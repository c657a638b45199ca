"""``senet-zoo report``: a Markdown page and a PNG chart of published against reproduced errors.

Only sound records count (``records.check_record``: numbers recomputed from the predictions file); per
model, image size, preprocessing and precision the newest one is shown. Reference-runtime agreement
records (the demo's stand-in: generated images labelled by OpenCV's Caffe runtime) make no ImageNet claim,
so they get a table of their own and stay out of the chart. matplotlib is optional (extra
``report``) and imported only to draw the chart.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .. import registry
from ..errors import SenetZooError
from ..files import atomic_path, atomic_write_text
from .records import Record, RecordCheck, check_record


@dataclass
class Entry:
    check: RecordCheck

    @property
    def record(self) -> Record:
        return self.check.record

    @property
    def label(self) -> str:
        r = self.record
        ckpt = registry.get(r.model)
        extra = [f"{r.img_size}"]
        if r.get("preprocess", "name") not in (None, "caffe"):
            extra.append(str(r.get("preprocess", "name")))
        if r.get("precision") not in (None, "fp32"):
            extra.append(str(r.get("precision")))
        port = f", timm's port" if r.is_timm_port else ""
        return f"{ckpt.display_name} ({', '.join(extra)}{port})"


def select(records: list[Record]) -> tuple[list[Entry], list[RecordCheck]]:
    """(newest sound record per model/size/preprocessing/precision, in registry order; unsound records)."""
    newest: dict[tuple, RecordCheck] = {}
    unsound = []
    for r in records:
        c = check_record(r)
        if not c.sound:
            unsound.append(c)
            continue
        key = (r.model, r.img_size, r.get("preprocess", "name"), r.get("precision"), r.is_timm_port)
        if key not in newest or r.created > newest[key].record.created:
            newest[key] = c
    order = {n: i for i, n in enumerate(registry.names())}
    entries = sorted((Entry(c) for c in newest.values()),
                     key=lambda e: (order.get(e.record.model, 99), e.record.img_size or 0, e.label))
    return entries, unsound


def _pair(a, b) -> str:
    return "–" if a is None or b is None else f"{a:.2f} / {b:.2f}"


def _ci(r: Record) -> str:
    c1, c5 = r.get("results", "top1_err_ci95"), r.get("results", "top5_err_ci95")
    if not (isinstance(c1, list) and isinstance(c5, list)):
        return ""
    return f"<br>[{c1[0]:.2f}, {c1[1]:.2f}] / [{c5[0]:.2f}, {c5[1]:.2f}]"


def _imagenet_table(entries: list[Entry]) -> list[str]:
    lines = ["| Model (crop) | Published top-1 / top-5 | Paper top-1 / top-5 | Reproduced top-1 / top-5 "
             "(95% CI) | Δ | Verdict | Images | Preprocessing, precision, device | Weights sha256 | Record |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        r = e.record
        ckpt = registry.get(r.model)
        paper = next((p for k, p in ckpt.published.items() if k.startswith("paper") and p.img_size == r.img_size),
                     None)
        env = r.get("environment") or {}
        lines.append(
            f"| {e.label} | {_pair(r.get('published', 'top1_err'), r.get('published', 'top5_err'))} | "
            f"{_pair(paper.top1_err, paper.top5_err) if paper else '–'} | "
            f"**{_pair(r.top1_err, r.top5_err)}**{_ci(r)} | {_delta(r)} | {r.verdict} | {r.num_images:,} | "
            f"{r.get('preprocess', 'name')}, {r.get('precision')}, {env.get('gpu') or env.get('device')} | "
            f"`{str(r.weights_sha256)[:12]}` | `{r.path.name}` |")
    return lines + [""]


def _reference_table(entries: list[Entry]) -> list[str]:
    lines = ["| Model (crop) | Disagreement top-1 / top-5 (%) | Verdict | Images | Compared with | "
             "Weights sha256 | Record |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        r = e.record
        source = r.published_source.split(":", 1)[-1].strip() or r.published_source
        lines.append(f"| {e.label} | **{_pair(r.top1_err, r.top5_err)}** | {r.verdict} | {r.num_images:,} | "
                     f"{source} | `{str(r.weights_sha256)[:12]}` | `{r.path.name}` |")
    return lines + [""]


def _side_by_side(entries: list[Entry]) -> list[str]:
    """Release (published), this conversion and timm's port, per model, size, preprocessing and precision,
    where a record of timm's port exists."""
    ours = {_setting(e.record): e.record for e in entries if not e.record.is_timm_port}
    lines = ["| Model (crop) | Published top-1 / top-5 | This conversion | timm's port | Port − conversion | "
             "Records |", "| --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        t = e.record
        if not t.is_timm_port:
            continue
        c = ours.get(_setting(t))
        diff = "–" if c is None else f"{t.top1_err - c.top1_err:+.2f} / {t.top5_err - c.top5_err:+.2f}"
        label = e.label.replace(", timm's port", "")
        lines.append(f"| {label} | {_pair(t.get('published', 'top1_err'), t.get('published', 'top5_err'))} | "
                     f"{'–' if c is None else _pair(c.top1_err, c.top5_err)} | **{_pair(t.top1_err, t.top5_err)}** | "
                     f"{diff} | {'' if c is None else f'`{c.path.name}`, '}`{t.path.name}` |")
    return lines + [""]


def _setting(r: Record) -> tuple:
    return r.model, r.img_size, r.get("preprocess", "name"), r.get("precision")


def _delta(r: Record) -> str:
    d1, d5 = r.get("delta", "top1_err"), r.get("delta", "top5_err")
    return f"{d1:+.2f} / {d5:+.2f}" if d1 is not None and d5 is not None else "–"


def render_markdown(entries: list[Entry], unsound: list[RecordCheck], chart_name: str | None) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    imagenet = [e for e in entries if not e.record.is_reference_runtime]
    reference = [e for e in entries if e.record.is_reference_runtime]
    lines = ["# Reproduced ImageNet-1k errors of the SENet Caffe release", "",
             f"Generated by `senet-zoo report` on {now} from {len(entries)} validation record(s). Every "
             "reproduced number below was recomputed from the record's per-image top-5 predictions before being "
             "shown.", "",
             "## ImageNet-1k reproductions", "",
             "Errors are percentages on the ILSVRC2012 validation set, single centre crop; *published* is what "
             "the record was compared with (the release README's numbers for the released caffemodels, or the "
             "paper's where the release gives none).", ""]
    if not imagenet:
        lines += ["No sound ImageNet validation record was found.", ""]
    else:
        lines += _imagenet_table(imagenet)
        refs = sorted({e.check.published_label for e in imagenet if e.check.published_label})
        if refs:
            lines += ["Published numbers: " + "; ".join(refs) + ".", ""]
    if any(e.record.is_timm_port for e in imagenet):
        lines += ["## The release, this conversion and timm's port", "",
                  "timm's `legacy_se*` weights are Cadene's 2018 port of the same caffemodels, evaluated here "
                  "with their own normalisation (ImageNet mean/std; `validate --timm-weights`) on the same "
                  "images and through the same harness as this conversion. Errors in %, top-1 / top-5.", ""]
        lines += _side_by_side(imagenet)
    if chart_name:
        lines += [f"![Published against reproduced errors]({chart_name})", ""]
    if reference:
        lines += ["## Agreement with the reference runtime (not ImageNet results)", "",
                  "These records compare a conversion with OpenCV's Caffe runtime on the same images (the "
                  "demo's seeded stand-in and generated JPEGs): the percentages are images on which the two "
                  "disagree, not ImageNet errors, and no published number is reproduced by them.", ""]
        lines += _reference_table(reference)
    if unsound:
        lines += ["## Records left out", ""]
        lines += [f"- `{c.record.path}`: {c.problems[0]}" for c in unsound]
        lines.append("")
    return "\n".join(lines)


def _ci_bars(entries: list[Entry], key: str, rep) -> "np.ndarray":  # noqa: F821
    import numpy as np

    err = np.zeros((2, len(entries)))
    for i, e in enumerate(entries):
        ci = e.record.get("results", f"{key}_ci95")
        if isinstance(ci, list) and len(ci) == 2:
            err[:, i] = [max(rep[i] - ci[0], 0), max(ci[1] - rep[i], 0)]
    return err


def draw_chart(entries: list[Entry], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SenetZooError(path, "drawing the chart needs matplotlib: pip install 'senet-zoo[report]' "
                            "(or pass --no-chart)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [e.label for e in entries]
    x = np.arange(len(entries))
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 1.9 * len(entries) + 5), 4.8), constrained_layout=True)
    for ax, key, title in ((axes[0], "top1_err", "Top-1 error (%)"), (axes[1], "top5_err", "Top-5 error (%)")):
        pub = np.array([e.record.get("published", key) or np.nan for e in entries], dtype=float)
        rep = np.array([e.record.get("results", key) for e in entries], dtype=float)
        err = _ci_bars(entries, key, rep)
        ax.bar(x - 0.2, pub, 0.4, label="published", color="#9aa5b1")
        ax.bar(x + 0.2, rep, 0.4, yerr=err, capsize=3, label="reproduced (95% CI)", color="#2b6cb0")
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    # The differences, where reproduction is decided: reproduced - published, with the tolerance band.
    ax = axes[2]
    tol = max((e.record.get("tolerance_pp") or 0.0) for e in entries)
    ax.axhspan(-tol, tol, color="#c6f6d5", label=f"tolerance ±{tol:g} pp")
    ax.axhline(0, color="#555", lw=0.8)
    for offset, key, color, name in ((-0.15, "top1_err", "#2b6cb0", "top-1"), (0.15, "top5_err", "#dd6b20", "top-5")):
        rep = np.array([e.record.get("results", key) for e in entries], dtype=float)
        pub = np.array([e.record.get("published", key) or np.nan for e in entries], dtype=float)
        ax.errorbar(x + offset, rep - pub, yerr=_ci_bars(entries, key, rep), fmt="o", capsize=3, color=color,
                    label=f"{name} (95% CI)")
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    ax.set_title("Reproduced − published (pp)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("SENet Caffe release on ImageNet-1k val: published vs reproduced errors")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_report(records: list[Record], output: str | Path, chart: str | Path | None = None, draw: bool = True,
                 log: Callable[[str], None] = print) -> tuple[Path, Path | None]:
    output = Path(output)
    entries, unsound = select(records)
    chart_path = None
    imagenet = [e for e in entries if not e.record.is_reference_runtime]
    if draw and imagenet:
        chart_path = Path(chart) if chart else output.with_suffix(".png")
        draw_chart(imagenet, chart_path)
    chart_ref = None
    if chart_path is not None:
        chart_ref = Path(os.path.relpath(chart_path.resolve(), output.resolve().parent)).as_posix()
    atomic_write_text(output, render_markdown(entries, unsound, chart_ref))
    log(f"wrote {output}" + (f" and {chart_path}" if chart_path else "") +
        f": {len(entries)} result(s), {len(unsound)} record(s) left out")
    return output, chart_path
