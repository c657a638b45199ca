"""The device check's decisions without running it: workers and batch from shared memory and the CPU quota,
and the rates read from timestamps (literal expectations, hand-made inputs)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from gpu_check import loader_plan  # noqa: E402
from gpu_check.budget import progress_points, rates  # noqa: E402

MIB = 2**20


@pytest.mark.parametrize("shm_free, expect", [
    (24 * 1024 * MIB, (15, 128)),      # a roomy /dev/shm: as asked (31 batches of 19 MB = 597 MB)
    (64 * MIB, (2, 32)),               # docker's default 64 MB: 32 MiB for 5 batches of 4.8 MB
    (1024 * MIB, (15, 64)),            # 512 MiB of room: 31 batches of 9.6 MB (the batch goes first)
    (8 * MIB, (0, 32)),                # not even one worker's batches: decode in the main process
])
def test_batch_then_workers_reduced_until_the_batches_in_flight_fit_half_the_shm(shm_free, expect):
    p = loader_plan.plan(15, 128, 224, shm_free)
    assert (p["workers"], p["batch"]) == expect
    assert p["shm_need"] <= shm_free // 2 or p["workers"] == 0


def test_an_explicit_batch_is_kept_and_only_workers_drop():
    p = loader_plan.plan(15, 128, 224, 256 * MIB, batch_fixed=True)
    assert (p["workers"], p["batch"]) == (2, 128)   # 5 batches of 19.3 MB in 128 MiB of room (6.97 fit)
    assert "workers 15 -> 2" in p["note"] and "batch 128" not in p["note"]


def test_unknown_shm_changes_nothing():
    assert loader_plan.plan(15, 128, 224, None)["workers"] == 15


def test_settings_take_workers_from_the_cgroup_quota_and_batch_from_shm(tmp_path, monkeypatch):
    """The whole chain on a fake machine: 64 cores, a 4-CPU quota, a 64 MB /dev/shm."""
    import os

    import gpu_validate
    from senet_zoo import host

    (tmp_path / "cpu.max").write_text("400000 100000\n")
    monkeypatch.setattr(host, "CGROUP_V2_CPU_MAX", tmp_path / "cpu.max")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(host, "shm_bytes", lambda path="/dev/shm": (64 * MIB, 64 * MIB))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    s = gpu_validate.settings_from({"DEVICE": "cuda"})
    # 4 CPUs -> validate's CUDA default of 3 workers; 64 MiB -> batch 32, and 2 workers (5 batches of 4.8 MB
    # in 32 MiB of room; 3 workers would keep 7 in flight)
    assert (s["workers"], s["batch_size"]) == (2, 32)
    monkeypatch.setattr(host, "shm_bytes", lambda path="/dev/shm": (16 * 1024 * MIB, 16 * 1024 * MIB))
    s = gpu_validate.settings_from({"DEVICE": "cuda"})
    assert (s["workers"], s["batch_size"]) == (3, 128)


def test_validate_progress_lines_become_points():
    lines = [(1.0, "decode cache ...\n"), (2.0, "validate: 1,280/6,400 images, 310.2 img/s\n"), (3.0, "x\n"),
             (4.5, "validate: 2,560/6,400 images, 400.0 img/s\n")]
    assert progress_points(lines) == [(2.0, 1280), (4.5, 2560)]


def test_steady_state_starts_after_the_first_w_batches_and_ignores_validates_last_two_points():
    # batches of 2 images, 1 s each, after 10 s of start-up; validate reports step s when s+1 is done,
    # and the last two together: true steady rate 2 images/s
    points = [(12.0, 2), (13.0, 4), (14.0, 6), (14.0, 8)]
    r = rates(points, started=0.0, ended=15.0, warm_images=4, lagged=True)
    assert r["steady_images_per_s"] == pytest.approx(2.0)
    assert r["startup_s"] == 12.0 and r["whole_images_per_s"] == pytest.approx(8 / 15)
    # points taken in-process after each batch (no lag): the last point counts
    inline = [(11.0, 2), (12.0, 4), (13.0, 6), (14.0, 8)]
    assert rates(inline, 0.0, 14.0, warm_images=4)["steady_images_per_s"] == pytest.approx(2.0)


def test_no_steady_rate_from_a_run_shorter_than_its_warm_up():
    r = rates([(5.0, 2), (6.0, 4)], 0.0, 6.0, warm_images=4, lagged=True)
    assert r["steady_images_per_s"] is None and "first 4 images" in r["steady_note"]


def test_the_stop_handler_acts_in_the_checks_own_process_only(tmp_path):
    """Forked children (DataLoader workers, the image pool, which its pool stops with SIGTERM) inherit the
    handler: in them SIGTERM must kill as usual, not write and print the check's table."""
    import os
    import signal
    import time

    from gpu_check.budget import Check

    check = Check(60, tmp_path / "out", {}, render=lambda c: "TABLE")
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    check.install_stop_handlers()
    try:
        pid = os.fork()
        if pid == 0:  # the child: SIGTERM to itself, as Pool.terminate() does
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert not (tmp_path / "out" / "table.txt").exists()
