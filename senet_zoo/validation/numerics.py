"""What arithmetic the evaluation really runs with: setting it, reading it back, and measuring it.

Exact mode (fp32) means float32 convolutions and matmuls with float32 accumulation: no TF32 (10-bit
mantissa inputs, about 1e-3 relative error), no reduced-precision oneDNN paths, deterministic cuDNN. The
flags are set once (``set_numerics``); just before the evaluation loop ``read_flags`` asks torch what it
actually reports (something in between, a library or user code, may have changed them) and
``require_exact`` refuses to run when any of them is not fp32. ``conv_probe`` then measures the arithmetic
itself: a convolution on the evaluation device against the same convolution in float64, whose relative
error goes into the record (fp32: about 1e-6; TF32: about 1e-3; bf16: about 1e-2).
"""
from __future__ import annotations

import time

import torch

from ..errors import SenetZooError


def _new_api_objects() -> dict:
    """name -> the torch.backends object carrying ``fp32_precision`` (the newer per-backend settings, torch
    >= 2.9) for each legacy TF32 flag set_numerics owns, where this torch has them. torch refuses to *read* a
    legacy flag ("mix of the legacy and new APIs") when the two disagree, so set_numerics writes both, the
    new ones first ("cudnn" is CUDA's "all", the parent of conv and rnn)."""
    if not hasattr(torch._C, "_set_fp32_precision_setter"):
        return {}
    b = torch.backends
    found = {"cuda.matmul": b.cuda.matmul, "cudnn": b.cudnn,
             "cudnn.conv": getattr(b.cudnn, "conv", None), "cudnn.rnn": getattr(b.cudnn, "rnn", None)}
    return {k: v for k, v in found.items() if v is not None}


def set_numerics(precision: str) -> dict:
    """Exact fp32 (TF32 off, deterministic cuDNN, no autotuning) unless mixed precision was asked for; then
    reads every setting back. Refuses in one line (``SenetZooError``) when torch cannot take or report them
    (the legacy and new TF32 APIs left in a state it will not read), and in exact mode when any setting it
    reports allows arithmetic below float32 (oneDNN's, which the caller owns, included)."""
    exact = precision == "fp32"
    try:
        for obj in _new_api_objects().values():
            obj.fp32_precision = "ieee" if exact else "tf32"
        torch.backends.cuda.matmul.allow_tf32 = not exact
        torch.backends.cudnn.allow_tf32 = not exact
        torch.backends.cudnn.deterministic = exact
        torch.backends.cudnn.benchmark = not exact
        torch.set_float32_matmul_precision("highest" if exact else "high")
    except (RuntimeError, ValueError, AttributeError) as e:
        raise SenetZooError(None, f"cannot set torch's precision for {precision} "
                            f"({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    flags = read_flags()
    unreadable = [k for k, v in flags.items() if isinstance(v, str) and v.startswith(UNREADABLE)]
    if unreadable:
        raise SenetZooError(None, f"torch cannot report its precision settings after senet-zoo set them for "
                            f"{precision}: {', '.join(unreadable)} unreadable (the legacy and new TF32 APIs "
                            "were mixed); set them through one API only")
    if exact:
        require_exact(flags, "after senet-zoo set exact fp32")
    return {"tf32": not exact, "cudnn_deterministic": exact, "cudnn_benchmark": not exact}


UNREADABLE = "unreadable"


def _read(get) -> object:
    try:
        return get()
    except RuntimeError as e:  # torch refuses to read a legacy flag that disagrees with the new API
        return f"{UNREADABLE}: {str(e).splitlines()[0][:80] if str(e) else 'RuntimeError'}"


def read_flags() -> dict:
    """The precision settings torch reports now, legacy and (where this torch has it) the newer
    ``fp32_precision`` API. Never raises: a setting torch refuses to report is ``"unreadable: ..."``, which
    ``not_fp32`` counts as not exact."""
    b = torch.backends
    flags = {
        "cuda.matmul.allow_tf32": _read(lambda: bool(b.cuda.matmul.allow_tf32)),
        "cudnn.allow_tf32": _read(lambda: bool(b.cudnn.allow_tf32)),
        "float32_matmul_precision": _read(torch.get_float32_matmul_precision),
        "cudnn.deterministic": bool(b.cudnn.deterministic),
        "cudnn.benchmark": bool(b.cudnn.benchmark),
    }
    for name, obj in (("cuda.matmul", getattr(b.cuda, "matmul", None)),
                      ("cudnn.conv", getattr(b.cudnn, "conv", None)),
                      ("mkldnn.matmul", getattr(getattr(b, "mkldnn", None), "matmul", None)),
                      ("mkldnn.conv", getattr(getattr(b, "mkldnn", None), "conv", None))):
        try:
            value = getattr(obj, "fp32_precision", None) if obj is not None else None
        except Exception:  # some builds raise for backends they lack
            value = None
        if isinstance(value, str):
            flags[f"{name}.fp32_precision"] = value
    return flags


def not_fp32(flags: dict) -> list[str]:
    """The flags that allow arithmetic below float32, or that torch would not report (empty: exact)."""
    bad = [k for k in ("cuda.matmul.allow_tf32", "cudnn.allow_tf32") if flags.get(k) is not False]
    if flags.get("float32_matmul_precision") != "highest":
        bad.append("float32_matmul_precision")
    bad += [k for k, v in flags.items() if k.endswith(".fp32_precision") and v not in ("ieee", "none")]
    return bad


def require_exact(flags: dict, when: str = "just before the loop") -> None:
    bad = not_fp32(flags)
    if bad:
        shown = ", ".join(f"{k}={flags[k]}" for k in bad)
        raise SenetZooError(None, f"exact fp32 evaluation refused: torch reports {shown} {when} "
                            "(something outside senet-zoo changed the precision settings); use --amp for "
                            "mixed precision")


def conv_probe(device: torch.device, autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
               seconds: float = 1.0, repetitions: int = 3) -> dict:
    """Relative error of a 3x3 convolution (256 -> 256 channels: 2,304 products per output, as in SE-ResNet
    stage 3) run as the evaluation runs it, against float64 on the CPU: max |y - y64| / max |y64|, the worst
    of ``repetitions`` on fresh random data, stopping early after ``seconds`` (at least one). About 0.1 s on
    a CPU core; the error depends on the accumulation length, not on the spatial size."""
    gen = torch.Generator().manual_seed(0)
    worst, reps, t0 = 0.0, 0, time.perf_counter()
    while reps == 0 or (time.perf_counter() - t0 < seconds and reps < repetitions):
        x = torch.randn(2, 256, 14, 14, generator=gen, dtype=torch.float64)
        w = torch.randn(256, 256, 3, 3, generator=gen, dtype=torch.float64) / 48.0
        ref = torch.nn.functional.conv2d(x, w, padding=1)
        xd, wd = x.to(device, torch.float32), w.to(device, torch.float32)
        if channels_last:
            xd, wd = xd.contiguous(memory_format=torch.channels_last), wd.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if autocast_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                    y = torch.nn.functional.conv2d(xd, wd, padding=1)
            else:
                y = torch.nn.functional.conv2d(xd, wd, padding=1)
        err = float((y.double().cpu() - ref).abs().max() / ref.abs().max())
        worst = max(worst, err)
        reps += 1
    return {"conv_rel_err": worst, "repetitions": reps, "seconds": round(time.perf_counter() - t0, 3),
            "shape": "conv2d 3x3, 2x256x14x14 -> 256 channels, vs float64 on the CPU",
            "measure": "max |y - y64| / max |y64|"}
