"""The device check's table: what each figure is, in its column's name.

Main table, one row per model and mode, steady-state images/s (the clock starts after the first W batches,
W = workers; start-up is in the runs table below it):

    model only      the model alone on a uint8 batch already on the device (normalise + forward + top-5),
                    validate's settings, synchronised once per timed loop
    ceiling img/s   the matmul rate of that precision (fp32: TF32 off) / (2 x MACs per image): what the
                    device could do if every multiply-add ran at dense-matmul speed
    % of ceiling    the best of ours end to end (decoding or cached) as a share of that ceiling
    ours decode     ``validate`` end to end, decoding the JPEGs (no cache, or the run that fills it)
    ours cached     ``validate`` end to end reading the filled decode cache
    timm TF32 off   timm's validate.py loop end to end; fp32 rows compare with this one (same arithmetic)
    timm TF32 on    the same with TF32 on (timm's default), beside it
    ours/timm       best ours / timm (fp32 rows: TF32 off; mixed precision: TF32 on)
    limit           what bounds ours: the model (ours >= 85% of model only), decoding (the decoding run
                    >= 85% of the input pipeline alone), else the loop's overhead
"""
from __future__ import annotations

import time

MAIN_COLS = ["model", "mode", "model only", "ceiling img/s", "% of ceiling", "ours decode", "ours cached",
             "timm TF32 off", "timm TF32 on", "ours/timm", "limit"]
RUN_COLS = ["run", "images", "whole-run img/s", "start-up s", "steady img/s", "steady from s", "step s"]


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def cell(check, name: str, key: str = "steady_images_per_s") -> tuple[float | None, str]:
    """(value, text): the figure, or why there is none (the status word: skipped, timeout, error,
    interrupted; '-' when the step was never reached; 'n/a' when it ran but has no such figure)."""
    e = check.steps.get(name)
    if not e:
        return None, "-"
    if e.get("status") != "ok":
        return None, e.get("status", "?").split(":")[0]
    v = e.get(key)
    return (v, _fmt(v)) if v is not None else (None, "n/a")


def main_rows(check) -> list[list[str]]:
    s = check.settings
    rows = []
    for name in s["models"]:
        for mode in s["modes"]:
            k = f"{name}/{mode}"
            mo, mo_s = cell(check, f"model_only {k}", "images_per_s")
            dec, dec_s = cell(check, f"ours {k} decode")
            cac, cac_s = cell(check, f"ours {k} cached")
            off, off_s = cell(check, f"timm {k} tf32-off")
            on, on_s = cell(check, f"timm {k} tf32-on")
            mm, g = check.ok(f"matmul {mode}"), check.ok(f"gmacs {name}")
            ceiling = mm["tflops"] * 1e12 / (2 * g["gmacs"] * 1e9) if mm and g else None
            ours = max([v for v in (dec, cac) if v is not None], default=None)
            timm = off if mode == "fp32" else on
            pipe, _ = cell(check, "pipeline decode")
            limit = "-"
            if ours is not None and mo is not None:
                if ours >= 0.85 * mo:
                    limit = "model"
                elif dec is not None and pipe is not None and dec >= 0.85 * pipe and (cac is None or cac > dec):
                    limit = "decoding"
                else:
                    limit = "loop overhead"
            rows.append([name, mode, mo_s, _fmt(ceiling), f"{100 * ours / ceiling:.0f}%" if ours and ceiling else "-",
                         dec_s, cac_s, off_s, on_s, f"{ours / timm:.2f}x" if ours and timm else "-", limit])
    return rows


def run_rows(check) -> list[list[str]]:
    rows = []
    for name, e in check.steps.items():
        if not name.startswith(("ours ", "timm ", "pipeline ")):
            continue
        if e.get("status") != "ok":
            rows.append([name, "-", "-", "-", e.get("status", "?").split(":")[0], "-", _fmt(e.get("step_s"))])
            continue
        images = e.get("images")
        rows.append([name, f"{images:,}" if isinstance(images, int) else "-", _fmt(e.get("whole_images_per_s")),
                     _fmt(e.get("startup_s")), _fmt(e.get("steady_images_per_s")) if e.get("steady_images_per_s")
                     else "n/a", _fmt(e.get("steady_from_s")), _fmt(e.get("step_s"))])
    return rows


def _grid(cols: list[str], rows: list[list[str]], left: int) -> list[str]:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]

    def fmt(r):
        return "  ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
    return [fmt(cols), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def render(check) -> str:
    s = check.settings
    env = check.steps.get("env", {})
    where = env.get("gpu") or env.get("cpu") or s["device"]
    lines = [f"validation speed on {where} ({s['device']}), steady-state images/s; batch {s['batch_size']}, "
             f"{s['workers']} workers, {s['n']} images ({s['unique']} unique JPEGs) at {s['img_size']} px, "
             f"budget {check.budget:.0f} s, used {time.monotonic() - check.t0:.0f} s"
             + (f", STOPPED by {check.interrupted}" if check.interrupted else "")]
    if env.get("status") == "ok":
        lines.append(_env_line(env))
    lines += _grid(MAIN_COLS, main_rows(check), 2)
    lines.append("")
    lines += _grid(RUN_COLS, run_rows(check), 1)
    for mode in s["modes"]:
        mm = check.ok(f"matmul {mode}")
        if mm:
            lines.append(f"matmul {mode}: {mm['tflops']:.3g} TFLOP/s ({mm['size']}x{mm['size']}"
                         f"{', TF32 off' if mode == 'fp32' else ''})")
    lines += _profile_lines(check) + _extra_lines(check)
    lines.append("steady = after the first W batches (W = workers); whole-run includes start-up (process start, "
                 "model load, worker fork, first decode); '-' = not reached, 'n/a' = no such figure, "
                 "skipped/timeout/error/interrupted = why a step has none (see gpu_validate.json)")
    return "\n".join(lines)


def _env_line(env: dict) -> str:
    parts = [f"torch {env.get('torch')}", f"CUDA {env.get('cuda')}"]
    if env.get("cudnn"):
        parts.append(f"cuDNN {env['cudnn']}")
    if env.get("driver"):
        parts.append(f"driver {env['driver']}")
    parts += [f"timm {env.get('timm')}", f"OpenCV {env.get('opencv')}",
              f"CPUs {env.get('usable_cpus')} usable (affinity {env.get('cpu_affinity')}, cgroup quota "
              f"{env.get('cgroup_cpu_quota') or 'none'})",
              f"/dev/shm {env.get('shm_mib')} MiB ({env.get('shm_free_mib')} free)",
              f"cc {'yes' if env.get('cc') else 'NO'}, Python.h {'yes' if env.get('python_h') else 'NO'}",
              f"imports {env.get('imports_s')} s"]
    return "environment: " + "; ".join(parts) + f"; loader: {env.get('loader_note')}"


def _profile_lines(check) -> list[str]:
    p = check.ok("profile")
    if not p:
        e = check.steps.get("profile")
        return [f"profile: {e['status']}"] if e else []
    shares = ", ".join(f"{k} {v:.0f}%" for k, v in p["shares_pct"].items())
    lines = [f"profile ({p['what']}): {p['device_ms_per_batch']:.1f} ms per batch; {shares}",
             f"  top {p['top_kind']}:"]
    lines += [f"    {t['share_pct']:5.1f}%  {t['ms_per_batch']:9.3f} ms  {t['name']}" for t in p["top"]]
    return lines


def _extra_lines(check) -> list[str]:
    lines = []
    sweep = check.steps.get("sweep")
    if sweep:
        if sweep.get("status") == "ok":
            resident = sorted({str(r["cache_resident"]) for r in sweep["per_setting"] if r.get("cache_resident")})
            lines.append(f"sweep (validate --all, {sweep['settings']} settings of {sweep.get('images') or '?'} images): "
                         f"{sweep['sweep_s']:.1f} s wall; per setting "
                         + ", ".join(f"{r['model']}@{r['img_size']} {_fmt(r['images_per_s'])} img/s"
                                     for r in sweep["per_setting"])
                         + "; decode cache read from " + (", ".join(resident) if resident else
                                                          "its memory-mapped files (the records name no resident copy)"))
        else:
            lines.append(f"sweep (validate --all): {sweep['status']}")
    for name in ("compile model_only", "ours compiled"):
        e = check.steps.get(name)
        if not e:
            continue
        if e.get("status") != "ok":
            lines.append(f"{name}: {e['status']}")
        elif name == "compile model_only":
            lines.append(f"--compile, model only: {_fmt(e['images_per_s'])} img/s after {e['compile_s']:.0f} s "
                         f"of compiling (outside the clock)")
    return lines
