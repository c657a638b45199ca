"""Planted breaks of issue 18 (Must 1): each test written for a behaviour must fail when the line it guards is
broken, and pass when it is not.

    .venv/bin/python benchmarks/planted_breaks.py [--only TEXT] [--list]

For each entry of ``BREAKS``: a fresh copy of the committed tree (``git archive HEAD | tar -x``, nothing else),
its tests run once as they are (they must pass: otherwise the entry proves nothing), then the entry's source
text (which must occur exactly once in its file) replaced by the broken text and the same tests run again
(they must fail). Each run is ``python -m pytest -q -x -p no:cacheprovider NODEIDS`` in the copy, with
``PYTHONPATH`` set to it, by this interpreter, one at a time. A skipped test counts as neither pass nor fail
(``tests/conftest.py`` skips what needs ``../shared/senet-release``: the copy sits in a scratch folder with
``shared`` linked beside it, as the repository sits beside /work/shared). The device-check entry's test copies
git's tracked files, so that copy is made a git repository of its own files (``git init; git add -A``, before
the break). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@dataclass(frozen=True)
class Break:
    behaviour: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    git: bool = False   # the test copies git's tracked files: the copy is made a repository of exactly its files


V, T = "senet_zoo/validation/", "tests/"
BREAKS = [
    # --- reuse that does not follow its inputs
    Break("--all reuses a record whose weights changed", V + "sweep.py",
          'same = (record.get("weights", {}).get("sha256") == sha256_file(resolve_weights(weights)[0])\n'
          '                and record', 'same = (record',
          (T + "test_validation_sweep.py::test_a_setting_whose_weights_changed_since_its_record_is_validated_again",)),
    Break("reused cache, --skip-bad-images: one-copy path marks every row good", V + "cache.py",
          "status[:] = np.where(have == STORED, ok, bad)", "status[:] = ok",
          (T + "test_validation_cache_hostile.py::test_a_reused_cache_keeps_a_bad_image_bad_under_skip_bad_images",)),
    Break("reused cache, --skip-bad-images: resident crops count bad rows as good", V + "runner.py",
          "cache.images, cache.status == STORED,", "cache.images, cache.status != -1,",
          (T + "test_validation_cache_hostile.py::test_a_reused_cache_keeps_a_bad_image_bad_under_skip_bad_images",)),
    Break("tar index stamp without mtime", V + "sources/tar/index.py",
          '"mtime_ns": st.st_mtime_ns,\n             "ino"', '\n             "ino"',
          (T + "test_validation_archives.py::test_a_tar_rewritten_with_the_same_size_and_mtime_is_read_again",
           T + "test_validation_archives.py::test_a_rewrite_with_another_mtime_is_told_where_ctime_does_not_move")),
    Break("tar index stamp of size and mtime only (same-size rewrite)", V + "sources/tar/index.py",
          '"mtime_ns": st.st_mtime_ns,\n             "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}',
          '"mtime_ns": st.st_mtime_ns}',
          (T + "test_validation_archives.py::test_a_tar_rewritten_with_the_same_size_and_mtime_is_read_again",
           T + "test_validation_archives.py::test_a_same_size_rewrite_that_the_header_sample_misses_is_told_by_the_stamp")),
    Break("--limit takes the largest hashes", V + "data.py",
          "key=lambda n: (key[n], n))[:limit])", "key=lambda n: (key[n], n))[-limit:])",
          (T + "test_validation_data.py::test_limit_is_the_smallest_sha256_of_the_names_in_name_order_in_every_form",)),
    Break("--limit hashes the relative path, not the base name (deterministic subset)", V + "data.py",
          'hashlib.sha256(n.rsplit("/", 1)[-1].encode("utf-8"))', 'hashlib.sha256(n.encode("utf-8"))',
          (T + "test_validation_data.py::test_limit_is_deterministic_and_layout_independent",)),
    Break("--limit in hash order, not name order (deterministic subset)", V + "data.py",
          "return sorted(sorted(names, key=lambda n: (key[n], n))[:limit])",
          "return sorted(names, key=lambda n: (key[n], n))[:limit]",
          (T + "test_validation_data.py::test_limit_is_deterministic_and_layout_independent",)),
    Break("WebDataset .json filename ignored", V + "sources/wds.py",
          "    if meta is not None:\n        raw = _member_bytes", "    if False:\n        raw = _member_bytes",
          (T + "test_validation_archives.py::test_the_json_filename_names_the_image_whatever_its_key",)),
    # --- Caffe's edge rules in conversion
    Break("BatchNorm eps from the caffemodel before the deploy prototxt", "senet_zoo/converters/convert.py",
          "_bn_eps(bn.name, prototxt_net, weights)", "_bn_eps(bn.name, weights, prototxt_net)",
          (T + "test_evidence_convert.py::test_batchnorm_eps_is_the_deploy_prototxts",)),
    Break("BatchNorm scale factor 0 read as 1", "senet_zoo/converters/caffe_layers.py",
          "factor = np.float32(0) if s == 0", "factor = np.float32(1) if s == 0",
          (T + "test_caffe_semantics.py::test_batchnorm_scale_factor_zero_zeroes_stored_statistics",)),
    Break("unset legacy blob dims default to 1", "senet_zoo/converters/caffe_io/schema.py",
          "int(legacy.get(k, 0))", "int(legacy.get(k, 1))",
          (T + "test_evidence_convert.py::test_unset_legacy_dims_are_zero_as_in_caffe",)),
    Break("round_mode: FLOOR pooling accepted", "senet_zoo/converters/convert.py",
          'if layer.proto.pooling_param.HasField("round_mode") and', "if False and",
          (T + "test_evidence_convert.py::test_pooling_that_rounds_down_is_refused",)),
    Break("safetensors metadata in insertion order (metadata order)", "senet_zoo/converters/safetensors_out.py",
          "for k in sorted(metadata)}", "for k in metadata}",
          (T + "test_evidence_convert.py::test_converting_twice_gives_identical_bytes",)),
    # --- the record's and the verdict's own facts
    Break("converter_version not written into the record", V + "runner.py",
          '"converter_version": meta.get("converter_version"),\n', "\n",
          (T + "test_validation_run.py::test_record_names_the_converter_and_a_pil_run_cannot_claim_the_published_numbers",)),
    Break("PIL protocol note dropped", V + "runner.py",
          'notes.append("PIL preprocessing, not', 'pass  # ("PIL preprocessing, not',
          (T + "test_validation_run.py::test_record_names_the_converter_and_a_pil_run_cannot_claim_the_published_numbers",)),
    Break("top-1/top-5 tolerance compared with <", V + "record.py",
          "round(abs(difference_pp), _TOLERANCE_DECIMALS) <= tolerance_pp",
          "round(abs(difference_pp), _TOLERANCE_DECIMALS) < tolerance_pp",
          (T + "test_validation_run.py::test_verdict_edges",)),
    Break("cudnn.deterministic not set", V + "numerics.py",
          "torch.backends.cudnn.deterministic = exact\n", "\n",
          (T + "test_validation_numerics.py::test_exact_mode_leaves_cudnn_deterministic_and_mixed_precision_lets_it_choose",)),
    # --- bounds
    Break("progressive JPEG (SOF2) header not read", "senet_zoo/images/image_size.py",
          "0xC1, 0xC2, 0xC3,", "0xC1, 0xC3,",
          (T + "test_evidence_images.py::test_progressive_jpeg_size_is_read_from_its_sof2_header",)),
    Break("bounded read reads the limit, not limit + 1", "senet_zoo/files.py",
          "st_size, limit) + 1)", "st_size, limit))",
          (T + "test_evidence_hostile.py::test_bounded_reads_see_one_byte_past_the_limit",)),
    # --- weak tests of the issue
    Break("device normalisation with the mean in BGR order", V + "evaluate.py",
          "np.asarray(mean, np.float64) * 255.0", "np.asarray(mean[::-1], np.float64) * 255.0",
          (T + "test_validation_preprocess.py::test_device_normalisation_is_caffe_mean_subtraction_exactly",)),
    Break("file-list hash over lines ending in a newline", V + "data.py",
          'return hashlib.sha256("\\n".join(self.names).encode("utf-8")).hexdigest()',
          'return hashlib.sha256("".join(n + "\\n" for n in self.names).encode("utf-8")).hexdigest()',
          (T + "test_validation_data.py::test_file_list_hash_is_the_documented_one",)),
    Break("device check: validate given an option it does not have (error cells)", "benchmarks/gpu_validate.py",
          'cmd += ["--img-size", str(self.img)]', 'cmd += ["--image-size", str(self.img)]',
          (T + "test_gpu_script.py::test_no_step_failed_and_the_first_rows_all_finished",), git=True),
]


def copy_tree(dest: Path) -> Path:
    """The committed tree in ``dest/tree``, with ``dest/shared`` linked to the real one (tests find the release
    files at the repository's ``../shared``)."""
    tree = dest / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    if SHARED.is_dir():
        (dest / "shared").symlink_to(SHARED)
    return tree


def env_for(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree)}


def sanity(tree: Path) -> None:
    """senet_zoo, in this process's child and in a grandchild (as the tests' subprocesses), is the copy's."""
    code = ("import senet_zoo, subprocess, sys; print(senet_zoo.__file__); sys.stdout.flush(); "
            "subprocess.run([sys.executable, '-c', 'import senet_zoo; print(senet_zoo.__file__)'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env_for(tree), capture_output=True,
                         text=True, check=True).stdout.split()
    print(f"sanity: senet_zoo imported from {out}", file=sys.stderr)
    assert out == [str(tree / "senet_zoo" / "__init__.py")] * 2, out


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[str, float, str]:
    """(pass / FAIL / skipped / error, seconds, pytest's summary line)."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          cwd=tree, env=env_for(tree), capture_output=True, text=True)
    seconds = time.monotonic() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    for line in lines:  # what failed, and how (an assertion, not an import or syntax error), for the log
        if line.startswith(("FAILED ", "ERROR ")):
            print(f"  {tree.parent.name}: {line[:300]}", file=sys.stderr)
    summary = lines[-1].strip("= ") if lines else proc.stderr.strip()[-200:]
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|error|errors|skipped)", summary))
    if counts.get("failed") or counts.get("error") or counts.get("errors"):
        outcome = "FAIL"
    elif proc.returncode == 0 and counts.get("passed") and not counts.get("skipped"):
        outcome = "pass"
    elif counts.get("skipped"):
        outcome = "skipped"
    else:
        outcome = f"error (exit {proc.returncode})"
    return outcome, seconds, summary


def planted(entry: Break, work: Path) -> dict:
    tree = copy_tree(work)
    if entry.git:
        subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
        subprocess.run(["git", "add", "-A"], cwd=tree, check=True)
    unbroken = run_tests(tree, entry.tests)
    path = tree / entry.file
    text = path.read_text()
    count = text.count(entry.old)
    assert count == 1, f"{entry.file}: the source text occurs {count} times: {entry.old!r}"
    path.write_text(text.replace(entry.old, entry.new))
    broken = run_tests(tree, entry.tests)
    return {"unbroken": unbroken, "broken": broken}


def cell(code: str) -> str:
    one = " ⏎ ".join(part.strip() for part in code.splitlines() if part.strip()) or "(removed)"
    return "`" + one.replace("|", "\\|") + "`"


def row(entry: Break, result: dict) -> str:
    (u, us, usum), (b, bs, bsum) = result["unbroken"], result["broken"]
    valid = u == "pass"
    verdict = ("caught" if b == "FAIL" else f"NOT CAUGHT ({b})") if valid else f"invalid: unbroken {u}"
    tests = "<br>".join(f"`{t.split('::', 1)[1]}`" for t in entry.tests)
    return (f"| {entry.behaviour} | `{entry.file}` | {cell(entry.old)} → {cell(entry.new)} | {tests} "
            f"| {u} ({usum.split(' in ')[0]}) | {verdict} ({bsum.split(' in ')[0]}) | {us:.0f} / {bs:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", metavar="TEXT", help="entries whose behaviour, file or test contains TEXT")
    p.add_argument("--list", action="store_true", help="list the entries and check each source text is there")
    args = p.parse_args(argv)
    chosen = [e for e in BREAKS if not args.only or args.only in f"{e.behaviour} {e.file} {' '.join(e.tests)}"]
    if args.list:
        for e in chosen:
            count = (REPO / e.file).read_text().count(e.old)
            print(f"{'ok ' if count == 1 else f'x{count}'} {e.behaviour}: {e.file} -> {', '.join(e.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        sanity(copy_tree(Path(tmp)))
    print("| behaviour | file | break | test(s) | unbroken | broken | s (unbroken / broken) |")
    print("|---|---|---|---|---|---|---|")
    missed = 0
    for e in chosen:
        with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
            print(f"{e.behaviour}:", file=sys.stderr)
            result = planted(e, Path(tmp))
        missed += not (result["unbroken"][0] == "pass" and result["broken"][0] == "FAIL")
        print(row(e, result), flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
