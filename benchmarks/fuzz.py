"""The long run of the mutation fuzzer (``tests/support/fuzz.py``; CI runs a fixed few hundred cases of it in
``tests/test_fuzz.py``).

    PYTHONPATH=. .venv/bin/python benchmarks/fuzz.py --cases 20000 --seed 1 [--minutes M] [--formats v1,hdf5]
    PYTHONPATH=. .venv/bin/python benchmarks/fuzz.py --seed 1 --replay v1:49 --out case.caffemodel

Prints, per format: cases, refused by ``SenetZooError`` (with the commonest kinds of message), converted
(caffemodels, structure unchanged) or accepted (label files), failures with what replays them, and the
largest time and traced peak allocation of one case. Formats are interleaved, so a run cut short by
``--minutes`` has as many cases of each. Exit status 1 when any case failed.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import fuzz  # noqa: E402


def report(counts: dict, seed: int, seconds: float, top: int) -> str:
    lines = [f"seed {seed}, {sum(c.cases for c in counts.values())} cases in {seconds:.0f} s "
             f"(bounds: {fuzz.TIME_BOUND_S} s, {fuzz.MEMORY_BOUND_BYTES >> 20} MiB traced per case)", "",
             "| format | cases | refused | converted / accepted | failures | max time | max traced memory |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for fmt, c in counts.items():
        lines.append(f"| {fmt} | {c.cases} | {c.refused} | {c.converted} | {len(c.failures)} | "
                     f"{c.max_seconds * 1000:.0f} ms | {c.max_peak_bytes / (1 << 20):.1f} MiB |")
    for fmt, c in counts.items():
        lines.append(f"\n{fmt}: commonest refusals")
        lines += [f"  {n:6d}  {kind}" for kind, n in c.kinds.most_common(top)]
        for index, result in c.failures:
            lines.append(f"  FAILURE --seed {seed} --replay {fmt}:{index}: {result['error']} "
                         f"[{result.get('mutation', '?')[:200]}]")
    return "\n".join(lines)


def replay(seed: int, spec: str, out: Path | None) -> int:
    fmt, index = spec.rsplit(":", 1)
    data, what, seed_name = fuzz.replay_bytes(fmt, seed, int(index))
    print(f"{fmt} case {index} of seed {seed} (from {seed_name}, {len(data)} bytes): {what}")
    if out is not None:
        out.write_bytes(data)
        print(f"written to {out}")
    counts = fuzz.run({fmt: 1}, seed, first_index=int(index))
    for _, result in counts[fmt].failures:
        print(f"FAILURE: {result['error']}")
    return 1 if counts[fmt].failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=20000, help="cases per format (default: 20000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--formats", default=",".join(fuzz.FORMATS), help=f"comma-separated, of {', '.join(fuzz.FORMATS)}")
    p.add_argument("--minutes", type=float, help="stop after this long, with the counts so far")
    p.add_argument("--top", type=int, default=5, help="refusal kinds listed per format")
    p.add_argument("--replay", metavar="FORMAT:INDEX", help="run one case again (and --out its input)")
    p.add_argument("--out", type=Path, help="with --replay: write the case's input here")
    args = p.parse_args()
    if args.replay:
        return replay(args.seed, args.replay, args.out)
    formats = [f for f in args.formats.split(",") if f]
    unknown = sorted(set(formats) - set(fuzz.FORMATS))
    if unknown:
        p.error(f"unknown format {unknown[0]} (one of {', '.join(fuzz.FORMATS)})")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the worker and the temporary folder go too
    start = time.monotonic()
    deadline = start + args.minutes * 60 if args.minutes else None

    def progress(n, fmt, index, result):
        if result["outcome"] == "failure":
            print(f"FAILURE {fmt}:{index}: {result['error']} [{result.get('mutation', '?')[:160]}]", file=sys.stderr)
        if (n + 1) % 1000 == 0:
            print(f"{n + 1} cases, {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)

    counts = fuzz.run({f: args.cases for f in formats}, args.seed, deadline=deadline, progress=progress)
    print(report(counts, args.seed, time.monotonic() - start, args.top))
    return 1 if any(c.failures for c in counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
