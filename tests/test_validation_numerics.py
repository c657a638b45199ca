"""What ``set_numerics`` leaves in torch, read back from torch itself (not from what the function returns).

In a child interpreter: these settings are process-wide, and torch refuses to read its legacy TF32 flags once
the two APIs disagree (test_numerics_apis.py), so a test here must not leave them changed for the next.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

CHILD = r"""
import json, torch
from senet_zoo.validation import numerics
b = torch.backends
out = {}
for mode in ("fp32", "bf16"):
    # the opposite of the mode first, so that every setting read below was changed by set_numerics
    b.cudnn.deterministic, b.cudnn.benchmark = mode != "fp32", mode == "fp32"
    numerics.set_numerics(mode)
    out[mode] = {"deterministic": b.cudnn.deterministic, "benchmark": b.cudnn.benchmark,
                 "matmul": torch.get_float32_matmul_precision()}
print(json.dumps(out))
"""


def test_exact_mode_leaves_cudnn_deterministic_and_mixed_precision_lets_it_choose():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == {
        "fp32": {"deterministic": True, "benchmark": False, "matmul": "highest"},
        "bf16": {"deterministic": False, "benchmark": True, "matmul": "high"}}


# In-process tests below never touch torch's real settings: set_numerics and read_flags see a hand-built
# stand-in for torch (its backends as plain objects), and conv_probe only reads.

class _Backend:
    """A torch.backends object: plain attributes, except those named in ``fail`` (raise on write) and
    ``unreadable`` (raise on read), as torch does for a legacy flag that disagrees with the newer API."""

    def __init__(self, fail=(), unreadable=(), error=RuntimeError("torch refuses"), **values):
        object.__setattr__(self, "_fail", set(fail))
        object.__setattr__(self, "_unreadable", set(unreadable))
        object.__setattr__(self, "_error", error)
        for k, v in values.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        if name in self._fail:
            raise self._error
        object.__setattr__(self, name, value)

    def __getattribute__(self, name):
        if not name.startswith("_") and name in object.__getattribute__(self, "_unreadable"):
            raise object.__getattribute__(self, "_error")
        return object.__getattribute__(self, name)


def _fake_torch(new_api=True, matmul=None, cudnn=None, mkldnn_conv="none"):
    from types import SimpleNamespace

    state = {"precision": "highest"}
    matmul = matmul or _Backend(allow_tf32=True, **({"fp32_precision": "tf32"} if new_api else {}))
    cudnn = cudnn or _Backend(allow_tf32=True, deterministic=False, benchmark=True,
                              **({"fp32_precision": "tf32"} if new_api else {}))
    if new_api:
        object.__setattr__(cudnn, "conv", _Backend(fp32_precision="tf32"))
        object.__setattr__(cudnn, "rnn", _Backend(fp32_precision="tf32"))
    backends = SimpleNamespace(cuda=SimpleNamespace(matmul=matmul), cudnn=cudnn,
                               mkldnn=SimpleNamespace(matmul=_Backend(fp32_precision="none"),
                                                      conv=_Backend(fp32_precision=mkldnn_conv)))
    fake = SimpleNamespace(backends=backends, _C=SimpleNamespace(),
                           get_float32_matmul_precision=lambda: state["precision"],
                           set_float32_matmul_precision=lambda v: state.update(precision=v))
    if new_api:
        fake._C._set_fp32_precision_setter = None
    return fake


def test_set_numerics_writes_both_apis_and_reads_every_setting_back(monkeypatch):
    from senet_zoo.validation import numerics

    fake = _fake_torch()
    monkeypatch.setattr(numerics, "torch", fake)
    b = fake.backends
    assert numerics._new_api_objects() == {"cuda.matmul": b.cuda.matmul, "cudnn": b.cudnn,
                                           "cudnn.conv": b.cudnn.conv, "cudnn.rnn": b.cudnn.rnn}
    assert numerics.set_numerics("fp32") == {"tf32": False, "cudnn_deterministic": True, "cudnn_benchmark": False}
    assert [b.cudnn.fp32_precision, b.cudnn.rnn.fp32_precision] == ["ieee", "ieee"]
    assert numerics.read_flags() == {
        "cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False, "float32_matmul_precision": "highest",
        "cudnn.deterministic": True, "cudnn.benchmark": False, "cuda.matmul.fp32_precision": "ieee",
        "cudnn.conv.fp32_precision": "ieee", "mkldnn.matmul.fp32_precision": "none",
        "mkldnn.conv.fp32_precision": "none"}
    assert numerics.set_numerics("bf16") == {"tf32": True, "cudnn_deterministic": False, "cudnn_benchmark": True}
    assert [b.cudnn.fp32_precision, b.cudnn.rnn.fp32_precision] == ["tf32", "tf32"]
    assert numerics.read_flags() == {
        "cuda.matmul.allow_tf32": True, "cudnn.allow_tf32": True, "float32_matmul_precision": "high",
        "cudnn.deterministic": False, "cudnn.benchmark": True, "cuda.matmul.fp32_precision": "tf32",
        "cudnn.conv.fp32_precision": "tf32", "mkldnn.matmul.fp32_precision": "none",
        "mkldnn.conv.fp32_precision": "none"}


def test_an_older_torch_has_only_the_legacy_flags(monkeypatch):
    from senet_zoo.validation import numerics

    from types import SimpleNamespace

    legacy = {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False, "float32_matmul_precision": "highest",
              "cudnn.deterministic": True, "cudnn.benchmark": False}
    fake = _fake_torch(new_api=False)
    fake.backends.mkldnn = SimpleNamespace()  # no oneDNN matmul/conv settings at all
    monkeypatch.setattr(numerics, "torch", fake)
    assert numerics._new_api_objects() == {}
    numerics.set_numerics("fp32")
    assert numerics.read_flags() == legacy
    del fake.backends.mkldnn  # a build without oneDNN
    assert numerics.read_flags() == legacy
    fake.backends.mkldnn = SimpleNamespace(matmul=None, conv=_Backend(fp32_precision=None))
    assert numerics.read_flags() == legacy


def test_the_newer_api_objects_are_those_this_torch_has(monkeypatch):
    from senet_zoo.validation import numerics

    fake = _fake_torch()
    b = fake.backends
    object.__delattr__(b.cudnn, "rnn")
    monkeypatch.setattr(numerics, "torch", fake)
    assert numerics._new_api_objects() == {"cuda.matmul": b.cuda.matmul, "cudnn": b.cudnn, "cudnn.conv": b.cudnn.conv}
    object.__delattr__(b.cudnn, "conv")
    assert numerics._new_api_objects() == {"cuda.matmul": b.cuda.matmul, "cudnn": b.cudnn}


def test_read_flags_reports_a_setting_torch_refuses_to_read_and_skips_one_it_lacks(monkeypatch):
    from senet_zoo.validation import numerics

    long = RuntimeError("mix of the legacy and new APIs " + "x" * 100 + "\nsecond line")
    fake = _fake_torch(matmul=_Backend(unreadable={"allow_tf32"}, error=long, fp32_precision="tf32"),
                       cudnn=_Backend(unreadable={"allow_tf32"}, error=RuntimeError(""), deterministic=1,
                                      benchmark=0, fp32_precision="ieee"))
    object.__setattr__(fake.backends.mkldnn.conv, "_unreadable", {"fp32_precision"})  # a build that lacks it
    monkeypatch.setattr(numerics, "torch", fake)
    assert numerics.read_flags() == {
        "cuda.matmul.allow_tf32": "unreadable: " + ("mix of the legacy and new APIs " + "x" * 100)[:80],
        "cudnn.allow_tf32": "unreadable: RuntimeError", "float32_matmul_precision": "highest",
        "cudnn.deterministic": True, "cudnn.benchmark": False, "cuda.matmul.fp32_precision": "tf32",
        "cudnn.conv.fp32_precision": "tf32", "mkldnn.matmul.fp32_precision": "none"}


def test_set_numerics_refuses_in_one_line_what_torch_will_not_take_or_report(monkeypatch):
    from senet_zoo.errors import SenetZooError
    from senet_zoo.validation import numerics

    cases = [
        (_Backend(fail={"deterministic"}, error=RuntimeError("cuDNN says no\ndetails"), allow_tf32=True,
                  deterministic=False, benchmark=True, fp32_precision="tf32"), "fp32",
         "cannot set torch's precision for fp32 (cuDNN says no)"),
        (_Backend(fail={"benchmark"}, error=ValueError("v" * 200), allow_tf32=True, deterministic=False,
                  benchmark=True, fp32_precision="tf32"), "bf16",
         f"cannot set torch's precision for bf16 ({'v' * 160})"),
        (_Backend(fail={"allow_tf32"}, error=AttributeError(), allow_tf32=True, deterministic=False,
                  benchmark=True, fp32_precision="tf32"), "fp32",
         "cannot set torch's precision for fp32 (AttributeError)"),
        (_Backend(unreadable={"allow_tf32"}, allow_tf32=True, deterministic=False, benchmark=True,
                  fp32_precision="tf32"), "bf16",
         "torch cannot report its precision settings after senet-zoo set them for bf16: cudnn.allow_tf32 "
         "unreadable (the legacy and new TF32 APIs were mixed); set them through one API only"),
        ("both", "fp32",
         "torch cannot report its precision settings after senet-zoo set them for fp32: cuda.matmul.allow_tf32, "
         "cudnn.allow_tf32 unreadable (the legacy and new TF32 APIs were mixed); set them through one API only"),
    ]
    for cudnn, mode, expected in cases:
        if cudnn == "both":
            fake = _fake_torch(matmul=_Backend(unreadable={"allow_tf32"}, allow_tf32=True, fp32_precision="tf32"),
                               cudnn=_Backend(unreadable={"allow_tf32"}, allow_tf32=True, deterministic=False,
                                              benchmark=True, fp32_precision="tf32"))
        else:
            fake = _fake_torch(cudnn=cudnn)
        monkeypatch.setattr(numerics, "torch", fake)
        with pytest.raises(SenetZooError) as e:
            numerics.set_numerics(mode)
        assert str(e.value) == expected
    # a setting set_numerics does not own (oneDNN's) left below float32: exact mode refuses, mixed runs
    monkeypatch.setattr(numerics, "torch", _fake_torch(mkldnn_conv="tf32"))
    assert numerics.set_numerics("bf16")["tf32"] is True
    with pytest.raises(SenetZooError) as e:
        numerics.set_numerics("fp32")
    assert str(e.value) == (
        "exact fp32 evaluation refused: torch reports mkldnn.conv.fp32_precision=tf32 after senet-zoo set exact "
        "fp32 (something outside senet-zoo changed the precision settings); use --amp for mixed precision")


def test_not_fp32_names_every_setting_below_float32_or_unreported():
    from senet_zoo.validation.numerics import not_fp32

    exact = {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False, "float32_matmul_precision": "highest",
             "cudnn.deterministic": False, "cudnn.benchmark": True, "cuda.matmul.fp32_precision": "ieee",
             "mkldnn.conv.fp32_precision": "none"}
    assert not_fp32(exact) == []
    assert not_fp32({}) == ["cuda.matmul.allow_tf32", "cudnn.allow_tf32", "float32_matmul_precision"]
    assert not_fp32({**exact, "cuda.matmul.allow_tf32": True, "cudnn.allow_tf32": "unreadable: RuntimeError",
                     "float32_matmul_precision": "high", "cuda.matmul.fp32_precision": "tf32",
                     "cudnn.conv.fp32_precision": "bf16", "mkldnn.matmul.fp32_precision": "ieee"}) == [
        "cuda.matmul.allow_tf32", "cudnn.allow_tf32", "float32_matmul_precision", "cuda.matmul.fp32_precision",
        "cudnn.conv.fp32_precision"]
    assert not_fp32({**exact, "float32_matmul_precision": "medium"}) == ["float32_matmul_precision"]


def test_require_exact_names_the_settings_and_when_they_were_read():
    from senet_zoo.errors import SenetZooError
    from senet_zoo.validation.numerics import require_exact

    exact = {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False, "float32_matmul_precision": "highest"}
    require_exact(exact)
    with pytest.raises(SenetZooError) as e:
        require_exact({**exact, "cudnn.allow_tf32": True, "float32_matmul_precision": "high"})
    assert str(e.value) == (
        "exact fp32 evaluation refused: torch reports cudnn.allow_tf32=True, float32_matmul_precision=high just "
        "before the loop (something outside senet-zoo changed the precision settings); use --amp for mixed "
        "precision")


class _Clock:
    """time.perf_counter as the probe sees it: ``step`` seconds more at each reading, from 100."""

    def __init__(self, step):
        self.now, self.step = 100.0 - step, step

    def perf_counter(self):
        self.now += self.step
        return self.now


def test_conv_probe_runs_the_documented_convolution_and_measures_float32(monkeypatch):
    """One repetition: a float64 reference of a 3x3, 256 -> 256 convolution of 2x256x14x14 seeded inputs
    (the first values of both are those of torch's CPU generator seeded with 0, drawn in that order), weights scaled by 1/sqrt(2,304) so
    that an output has unit variance, then the same convolution in float32; its relative error is float32's
    (about 1e-7 to 1e-6), not float64's (1e-16) nor bf16's."""
    import torch

    from senet_zoo.validation import numerics

    calls = []
    real = torch.nn.functional.conv2d

    def recording(x, w, **kw):
        calls.append((tuple(x.shape), x.dtype, tuple(w.shape), w.dtype, kw,
                      x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                      torch.is_autocast_enabled("cpu")))
        if len(calls) == 1:
            calls.append((x.flatten()[:3].tolist(), (w.flatten()[:3] * 48).tolist(), float(w.std())))
        return real(x, w, **kw)

    monkeypatch.setattr(torch.nn.functional, "conv2d", recording)
    cpu = torch.device("cpu")
    probe = numerics.conv_probe(cpu, seconds=0.0)
    err = probe.pop("conv_rel_err")
    probe.pop("seconds")
    assert probe == {"repetitions": 1, "shape": "conv2d 3x3, 2x256x14x14 -> 256 channels, vs float64 on the CPU",
                     "measure": "max |y - y64| / max |y64|"}
    assert 1e-8 < err < 1e-5, err
    first, w_first, w_std = calls.pop(1)
    assert first == [-2.310411800234176, -0.3732508612577643, -1.0608166785462863]
    assert w_first == pytest.approx([1.5192239200402162, 1.329894707634763, 0.020684007942072077], rel=1e-12)
    assert abs(w_std * 48 - 1) < 0.005, w_std
    assert calls == [((2, 256, 14, 14), torch.float64, (256, 256, 3, 3), torch.float64, {"padding": 1}, False, False),
                     ((2, 256, 14, 14), torch.float32, (256, 256, 3, 3), torch.float32, {"padding": 1}, False, False)]
    calls.clear()
    numerics.conv_probe(cpu, torch.bfloat16, channels_last=True, seconds=0.0)
    assert [c[4:] for c in calls[2:]] == [({"padding": 1}, True, True)]


def test_conv_probe_error_is_that_of_the_autocast_dtype():
    """bf16 keeps 8 bits of mantissa (unit roundoff 2^-9, about 2e-3), float16 11 bits (2^-12, about 2.4e-4):
    the probe's error under autocast is of that order (the inputs' rounding dominates)."""
    import torch

    from senet_zoo.validation.numerics import conv_probe

    cpu = torch.device("cpu")
    bf16 = conv_probe(cpu, torch.bfloat16, seconds=0.0)["conv_rel_err"]
    fp16 = conv_probe(cpu, torch.float16, seconds=0.0)["conv_rel_err"]
    assert 1e-3 < bf16 < 2e-2 and 1e-4 < fp16 < 1.5e-3, (bf16, fp16)


def test_conv_probe_repeats_until_its_time_or_count_is_spent(monkeypatch):
    """The worst of ``repetitions`` runs, stopping once ``seconds`` have passed, at least one run; the time
    reported is the probe's own (a clock that moves ``step`` per reading, from 100)."""
    import torch

    from senet_zoo.validation import numerics

    cpu = torch.device("cpu")
    monkeypatch.setattr(numerics, "time", _Clock(0.5))
    got = numerics.conv_probe(cpu, repetitions=100)  # 1 s by default: readings at +0.5 (go on), +1.0 (stop)
    assert (got["repetitions"], got["seconds"]) == (2, 1.5)
    monkeypatch.setattr(numerics, "time", _Clock(0.4444))
    got = numerics.conv_probe(cpu, seconds=5.0)  # 3 by default
    assert (got["repetitions"], got["seconds"]) == (3, 1.778)
    monkeypatch.setattr(numerics, "time", _Clock(0.5))
    got = numerics.conv_probe(cpu, seconds=0.0)
    assert got["repetitions"] == 1 and got["conv_rel_err"] > 0
