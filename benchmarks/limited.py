"""One child process under a wall-clock timeout and an address-space cap, with its peak memory: what the
hostile-input benchmarks measure each case with.

Peak RSS is the kernel's ``ru_maxrss`` of that child (``os.wait4``), so it is known even when the child is
killed; the child gets its own session, and a timeout kills the whole group (DataLoader workers included).
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass


@dataclass
class Finished:
    returncode: int | None           # None: killed at the timeout
    wall_s: float
    peak_rss_mb: float
    lines: list[str]                 # stdout and stderr together


def run_limited(cmd: list[str], *, cwd, env: dict, timeout: float, memory_bytes: int) -> Finished:
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        os.setsid()

    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, preexec_fn=limits)
        killed = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        wall = time.perf_counter() - start
        out.seek(0)
        lines = out.read().splitlines()
    return Finished(None if killed else proc.returncode, wall, usage.ru_maxrss / 1024, lines)
