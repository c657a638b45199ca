"""Steps under one time budget, a table however the run ends.

Every step gets a limit (its cap, and no more than the budget has left); a step that times out, fails or no
longer fits is recorded as such (a table cell), never the end of the check. In-process steps are stopped by
``SIGALRM`` (so nothing they do may be a first import: ``gpu_validate.load_libraries`` imports everything
before the first step); subprocess steps run in their own process group, killed as a whole at the limit.

If the check itself is stopped (the wrapper's ``timeout`` sends SIGTERM, a person presses Ctrl-C), the handler
kills the running child's process group and the DataLoader workers, marks the running step ``interrupted``,
writes and prints the table, and exits 128 + the signal number. It writes with ``os.write``: the signal may
arrive while the main thread is inside a ``print``, and a buffered stream refuses re-entry.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

MIN_STEP_S = 3.0      # a step with less time than this left is skipped, not started
RESERVE_S = 8.0       # kept back for writing the table


class StepTimeout(BaseException):
    """Raised by SIGALRM inside an in-process step (BaseException: a step's own ``except Exception`` must
    not swallow it)."""


def _alarm(signum, frame):
    raise StepTimeout()


class Check:
    def __init__(self, budget: float, out: Path, settings: dict, render=None, t0: float | None = None):
        self.t0 = time.monotonic() if t0 is None else t0   # the entry passes its own start: imports count
        self.budget = budget
        self.deadline = self.t0 + budget - RESERVE_S
        self.out = out
        self.settings = settings
        self.render = render          # Check -> table text (set by the entry)
        self.steps: dict[str, dict] = {}
        self.current: str | None = None
        self.child: subprocess.Popen | None = None
        self.interrupted: str | None = None
        self.pid = os.getpid()
        self.out.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------ budget

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def clock(self) -> str:
        return f"{time.monotonic() - self.t0:6.1f}s"

    def skip(self, name: str, why: str) -> None:
        self.steps[name] = {"status": f"skipped: {why}"}
        print(f"[{self.clock()}] {name}: skipped ({why})", flush=True)
        self.save()

    def _limit(self, name: str, cap: float) -> float | None:
        """Seconds a step may take, or None (recorded as skipped) when the budget cannot fit one."""
        limit = min(cap, self.left())
        if limit < MIN_STEP_S:
            self.skip(name, "budget spent")
            return None
        return limit

    def ok(self, name: str) -> dict | None:
        entry = self.steps.get(name)
        return entry if entry and entry.get("status") == "ok" else None

    # ------------------------------------------------------------------------------------------- steps

    def step(self, name: str, cap: float, fn, *a, alarm: bool = True, **k) -> dict | None:
        """Run ``fn(seconds, ...)`` in this process with at most ``cap`` seconds (and what the budget has
        left; ``seconds`` = 60% of that, for steps that can stop early). ``alarm=False``: no SIGALRM (CUDA's
        initialisation must not be cut in half; a hang there is the outer timeout's)."""
        limit = self._limit(name, cap)
        if limit is None:
            return None
        print(f"[{self.clock()}] {name} (up to {limit:.0f} s)", flush=True)
        t = time.monotonic()
        self.current = name
        old = signal.signal(signal.SIGALRM, _alarm) if alarm else None
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            value = fn(max(1.0, 0.6 * limit), *a, **k)
            entry = {"status": "ok", **(value if isinstance(value, dict) else {"value": value})}
        except StepTimeout:
            entry = {"status": f"timeout: after {limit:.0f} s"}
        except Exception as e:  # a failed step is a table cell, not the end of the check
            first = str(e).splitlines()[0] if str(e) else ""
            entry = {"status": f"error: {type(e).__name__}: {first}"[:240]}
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
            self.current = None
        entry.setdefault("step_s", round(time.monotonic() - t, 2))
        self.steps[name] = entry
        print(f"[{self.clock()}] {name}: {json.dumps(entry)[:300]}", flush=True)
        self.save()
        return entry if entry["status"] == "ok" else None

    def run(self, name: str, cap: float, cmd: list[str], parse, env: dict | None = None) -> dict | None:
        """A subprocess step in its own process group (killed as a whole at the limit). Its output lines are
        kept with the time each arrived (``parse(rc, lines, spawned, ended)``, lines = [(t, text)]): the
        steady-state rate of a ``validate`` run is read from its progress lines."""
        limit = self._limit(name, cap)
        if limit is None:
            return None
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                start_new_session=True, env=env)
        self.child, self.current = proc, name
        print(f"[{self.clock()}] {name} (up to {limit:.0f} s, pid {proc.pid}): {' '.join(cmd)}", flush=True)
        lines: list[tuple[float, str]] = []
        reader = threading.Thread(target=_collect, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=limit)
            reader.join(timeout=5)
            entry = parse(proc.returncode, lines, t, time.monotonic())
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            reader.join(timeout=5)
            entry = {"status": f"timeout: after {limit:.0f} s"}
        except Exception as e:
            entry = {"status": f"error: {type(e).__name__}: {e}"[:240]}
        finally:
            self.child, self.current = None, None
        entry["step_s"] = round(time.monotonic() - t, 2)
        entry.setdefault("output_tail", "".join(text for _, text in lines)[-800:])
        self.steps[name] = entry
        print(f"[{self.clock()}] {name}: {json.dumps({k: v for k, v in entry.items() if k != 'output_tail'})[:300]}",
              flush=True)
        self.save()
        return entry if entry.get("status") == "ok" else None

    # ------------------------------------------------------------------------------------ the outcome

    def document(self) -> dict:
        return {"settings": self.settings, "elapsed_s": round(time.monotonic() - self.t0, 2),
                "interrupted": self.interrupted, "steps": self.steps}

    def save(self) -> None:
        tmp = self.out / ".gpu_validate.json.tmp"
        tmp.write_text(json.dumps(self.document(), indent=2) + "\n")
        os.replace(tmp, self.out / "gpu_validate.json")

    def finish(self) -> str:
        text = self.render(self) if self.render else ""
        (self.out / "table.txt").write_text(text + "\n")
        self.save()
        return text

    def install_stop_handlers(self) -> None:
        self.pid = os.getpid()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stopped)

    def _stopped(self, signum, frame) -> None:
        if os.getpid() != self.pid:
            # A forked child (a DataLoader worker, the image pool, which its pool stops with SIGTERM) inherits
            # this handler: there the signal means what it always means.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the table short
        name = signal.Signals(signum).name
        self.interrupted = f"{name} at {time.monotonic() - self.t0:.0f} s"
        if self.child is not None and self.child.poll() is None:
            _kill_group(self.child)
        for p in multiprocessing.active_children():  # DataLoader workers, the image pool
            p.kill()
        if self.current:
            self.steps[self.current] = {"status": f"interrupted: {name} after "
                                                  f"{time.monotonic() - self.t0:.0f} s of the check"}
        try:
            text = self.finish()
            os.write(1, f"\n[{self.clock()}] stopped by {name}\n\n{text}\n".encode())
        finally:
            os._exit(128 + signum)


def _collect(stream, lines: list) -> None:
    for text in stream:
        lines.append((time.monotonic(), text))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# ----------------------------------------------------------------------------- rates from timestamps

PROGRESS = re.compile(r"validate: ([\d,]+)/([\d,]+) images")


def progress_points(lines) -> list[tuple[float, int]]:
    """(time, images done) from ``validate``'s progress lines (printed about every 10% when not a terminal)."""
    points = []
    for t, text in lines:
        m = PROGRESS.search(text)
        if m:
            points.append((t, int(m.group(1).replace(",", ""))))
    return points


def rates(points: list[tuple[float, int]], started: float, ended: float, warm_images: int,
          lagged: bool = False) -> dict:
    """Whole-run and steady-state figures from (time, images done) points of one run.

    whole run: images / (end - start), start-up included; start-up: start to the first result; steady: the
    clock starts at the first point with ``warm_images`` done (the first W batches: every worker's first
    batch, whose cost is forking, imports and the first decode), images/s from there to the last point.
    ``lagged``: the points are ``validate``'s, whose loop reports step s once step s+1 is under way (the copy
    back overlaps the next batch), so every point but the last comes one step late and the last two arrive
    together: the steady clock then stops at the last but one (with the last, a short run reads up to 2x)."""
    out: dict = {"images": points[-1][1] if points else 0}
    if not points:
        return {**out, "whole_images_per_s": None, "startup_s": None, "steady_images_per_s": None,
                "steady_note": "no progress points"}
    out["whole_images_per_s"] = points[-1][1] / (ended - started) if ended > started else None
    out["startup_s"] = round(points[0][0] - started, 2)
    usable = points[:-1] if lagged else points
    warm = next(((t, n) for t, n in usable if n >= warm_images), None)
    if warm is None or warm[1] >= usable[-1][1]:
        return {**out, "steady_images_per_s": None,
                "steady_note": f"too few progress points after the first {warm_images} images (the first W "
                               "batches) for a steady-state rate"}
    t_end, n_end = usable[-1]
    out["steady_images_per_s"] = (n_end - warm[1]) / (t_end - warm[0]) if t_end > warm[0] else None
    out["steady_images"] = n_end - warm[1]
    out["steady_from_s"] = round(warm[0] - started, 2)
    return out
