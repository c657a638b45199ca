"""Shared test helpers: where the upstream release files are, and synthetic release-format models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# mutmut runs the tests in its copy of the tree, REPO/mutants/ (README "Mutation testing"): the release files
# still lie beside the checkout, or every test that reads them would skip there and kill nothing
_CHECKOUT = REPO.parent if REPO.name == "mutants" else REPO
RELEASE_DIR = _CHECKOUT.parent / "shared" / "senet-release"

# registry name -> official prototxt file name (also in checkpoints.yaml; repeated here so a registry
# mistake cannot hide itself)
PROTOTXTS = {
    "se_bn_inception": "SE-BN-Inception.prototxt",
    "se_resnet50": "SE-ResNet-50.prototxt",
    "se_resnet101": "SE-ResNet-101.prototxt",
    "se_resnet152": "SE-ResNet-152.prototxt",
    "se_resnext50_32x4d": "SE-ResNeXt-50.prototxt",
    "se_resnext101_32x4d": "SE-ResNeXt-101.prototxt",
    "senet154": "SENet-154.prototxt",
}


def release_file(name: str) -> Path:
    """A file of the official release in ../shared/senet-release, or skip the test saying why."""
    path = RELEASE_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the upstream release files (prototxts, ILSVRC2017_val.txt) live in "
                    "../shared/senet-release beside the repository")
    return path


# The fast tier (`pytest -m "not slow"`, under 2 minutes on 2 cores) leaves out what takes over ~4 s there;
# each feature keeps a fast test (a smaller model, an in-process run, or the same check on fewer inputs).
# Listed by node id here rather than decorated in each file, so that the tier is decided in one place;
# brackets are literal, `*` is a wildcard. Tests of new files carry @pytest.mark.slow themselves.
SLOW = (
    "test_evidence_convert.py::test_converting_twice_gives_identical_bytes",   # the pinned-sha test stays fast
    "test_evidence_convert.py::test_leftovers_of_a_killed_convert_are_removed_by_the_next",
    "test_cli.py::test_demo_runs_the_whole_pipeline",                    # the demo's steps are tested one by one
    "test_cli.py::test_convert_all_finds_release_files_and_verifies",
    "test_cli.py::test_verify_exits_1_when_the_weights_differ_from_the_caffemodel",
    "test_cli.py::test_info_prints_paper_comparison",                    # in-process: test_cli_voice.py
    *(f"test_convert_equality.py::test_converted_model_equals_opencv_caffe_runtime[{name}]"  # the rest stay fast
      for name in ("senet154", "se_resnet152", "se_resnet101", "se_resnext101_32x4d", "se_resnet50",
                   "se_resnext50_32x4d")),
    "test_convert_equality.py::test_converted_weights_load_into_timm_strictly_with_equal_outputs",
    "test_convert_errors.py::test_converts_and_refuses_unknown_hash_without_flag",
    "test_convert_errors.py::test_failed_conversion_keeps_previous_output",
    "test_convert_errors.py::test_truncated_caffemodel",
    "test_convert_errors.py::test_not_a_caffe_file[content0]",                # the other contents stay fast
    "test_models.py::test_all_timm_twins_have_identical_state_dict_layout",
    "test_models.py::test_state_dict_loads_strictly_into_timm_and_outputs_match[senet154]",
    "test_synthetic.py::test_converter_mistakes_change_the_logits_a_lot",
    "test_synthetic.py::test_synthesis_is_deterministic_and_seeded",
    *(f"test_synthetic.py::test_synthetic_release_net[{name}]"
      for name in ("senet154", "se_resnet152", "se_resnet101", "se_resnext101_32x4d")),
    "test_synthetic.py::test_explicit_calibration_batch_sets_the_batchnorm_statistics",
    "test_timm_routes.py::test_each_documented_route_preprocesses_like_caffe[hf-hub]",  # hf-hub: test_hub_upload
    "test_quiet_pipes.py::test_push_into_a_pipe_has_no_bars_unless_asked[True]",
    "test_validation_run.py::test_record_and_predictions_match_an_independent_per_image_loop",
    "test_validation_run.py::test_expect_agreement_pil_amp_and_real_labels",    # shares the baseline run
    "test_validation_run.py::test_imagefolder_layout_with_workers_gives_the_same_predictions",
    "test_validation_run.py::test_torchrun_two_processes_equal_one_process",
    "test_validation_run.py::test_torchrun_not_reproduced_is_one_table_and_ends_the_launchers_report",
    "test_validation_run.py::test_resume_after_a_real_kill_equals_the_uninterrupted_run",
    "test_validation_run.py::test_resume_across_world_sizes",
    "test_validation_run.py::test_published_protocol_verdict_and_exit_code_1",  # verdict edges stay fast
    "test_validation_run.py::test_corrupt_image_fails_in_one_line_or_is_skipped_and_counted",
)


# mutated module -> the test files it owns besides those named after it (test_*<module>*.py)
_CAFFE_IO = ("test_caffe_io", "test_fuzz")
_SOURCES = ("test_validation_sources", "test_validation_archives", "test_validation_wds")
OWN_TESTS = {
    "records": ("records", "test_hub_gate"),
    **dict.fromkeys(("schema", "wire", "sniff", "binary", "hdf5", "caffemodel", "prototxt"), _CAFFE_IO),
    **dict.fromkeys(("headers", "extraction", "reader"), ("test_validation_archives", "test_validation_tar_index")),
    **dict.fromkeys(("folder", "layout", "parquet", "hf", "factory", "pack"), _SOURCES),
    "labels": ("test_validation_data", "test_classes", "test_validation_sources"),
}


def pytest_collection_modifyitems(config, items):
    import fnmatch

    for item in items:
        tail = item.nodeid.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatchcase(tail, pattern.replace("[", "[[]")) for pattern in SLOW):
            item.add_marker(pytest.mark.slow)
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" in mutant:
        _cheapest_files_first(items, mutant.split(".x")[0].rsplit(".", 1)[-1])


def _cheapest_files_first(items, module: str = "") -> None:
    """Under mutmut (README "Mutation testing"), one mutant's tests run with -x: the test files named after
    the mutated module (``download`` -> test_download_pinning.py) go first, then the test files that took the
    least time in mutmut's own measurement, and within a file the quickest tests (each file's tests stay
    together, so module fixtures are made once), so that a mutant a hand-computed unit test kills costs that
    test, not the conversions and validate runs before it. mutmut measures each test's call, not the module
    fixtures it is first to build (a conversion, a push), hence the module's own files first."""
    import json

    try:
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    cost: dict[str, float] = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        cost[path] = cost.get(path, 0.0) + float(durations.get(item.nodeid, 1.0))
    # hub/records.py is checked by its own tests and by the gate's
    names = (*OWN_TESTS.get(module, ()), *((module,) if module else ()))

    def own(path: str) -> bool:
        return any(name in path.rsplit("/", 1)[-1] for name in names)

    items.sort(key=lambda item: (not own(item.nodeid.split("::")[0]), cost[item.nodeid.split("::")[0]],
                                 item.nodeid.split("::")[0], float(durations.get(item.nodeid, 1.0))))
