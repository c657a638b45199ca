"""The seeded mutation fuzzer (``support/fuzz.py``) in CI, and the cases it found, kept as regular tests.

The long run is ``benchmarks/fuzz.py`` (figures in docs/benchmarks.md, "Fuzzing").
"""
from __future__ import annotations

import tracemalloc

import pytest
from support import fuzz, fuzz_seeds
from support.fuzz_mutations import _field, _fields_of, _inside, _splice

from senet_zoo import jsonio
from senet_zoo.converters import caffe_io
from senet_zoo.converters.convert import param_layers_by_name
from senet_zoo.errors import SenetZooError
from senet_zoo.validation import labels as label_files

SEED = 7
CASES = {"v2_packed": 150, "v2_unpacked": 150, "v1": 150, "hdf5": 100, "labels_txt": 150, "labels_json": 100,
         "torch_zip": 200, "tar": 80, "wds": 60, "parquet": 60}


@pytest.mark.slow
def test_mutated_files_are_converted_unchanged_or_refused_in_one_line_within_bounds(tmp_path):
    counts = fuzz.run(CASES, SEED)
    report = []
    for fmt, c in counts.items():
        assert c.cases == CASES[fmt]
        for index, result in c.failures:
            raw, what, seed_name = fuzz.replay_bytes(fmt, SEED, index)
            saved = fuzz.case_path(tmp_path, fmt, seed_name, index)
            saved.write_bytes(raw)
            report.append(f"{fmt} seed {SEED} case {index} ({what}): {result['error']}; input saved as {saved}; "
                          f"replay: benchmarks/fuzz.py --seed {SEED} --replay {fmt}:{index}")
    assert not report, "\n".join(report)
    # the run reached both sides of every parser: refusals and files that still convert / read
    for fmt, c in counts.items():
        assert c.refused > 0 and c.converted > 0, fmt


def test_cases_are_the_same_for_the_same_seed_and_differ_between_seeds(tmp_path):
    first, again = fuzz.write_seeds(tmp_path / "a"), fuzz.write_seeds(tmp_path / "b")
    assert all(first[k].read_bytes() == again[k].read_bytes() for k in first)  # HDF5 included
    seeds = {k: p.read_bytes() for k, p in first.items()}

    def cases(seed):
        return [fuzz.case_input(fmt, seed, i, seeds, tmp_path / "scratch.h5")[:2] for fmt in fuzz.FORMATS
                for i in range(4)]

    assert cases(3) == cases(3) != cases(4)


def test_the_seeds_convert_with_their_own_structure(tmp_path):
    paths = fuzz.write_seeds(tmp_path)
    structure = fuzz.seed_structures(paths)
    assert len({str(s) for s in structure.values()}) == 1  # all four formats hold the same net
    for fmt in fuzz.CAFFE_FORMATS:
        assert fuzz.run_case(fmt, fmt, paths[fmt], structure)["outcome"] == "converted"
    for kind in (*fuzz_seeds.TXT_LABEL_KINDS, "json"):
        assert len(fuzz.read_labels(paths[f"labels_{kind}"], kind)) == fuzz_seeds.NUM_LABELS
    state = fuzz.read_checkpoint(paths["torch_zip"])
    assert {k: v.shape for k, v in state.items()} == {
        "conv.weight": (4, 3, 3, 3), "bn.weight": (4,), "bn.bias": (4,), "bn.running_mean": (4,),
        "bn.running_var": (4,), "bn.num_batches_tracked": (), "fc.weight": (4, 3), "fc.bias": (3,)}
    assert state["fc.bias"].tolist() == [1.0, 3.0, 5.0]
    for fmt in fuzz.ARCHIVE_FORMATS:  # read whole, and as the reference reads them
        assert fuzz.run_case(fmt, fmt, paths[fmt], structure)["outcome"] == "accepted", fmt


# --- what the fuzzer found ------------------------------------------------------------------------------------


def _layer_record(raw: bytes, name: bytes):
    """The V2 layer record whose first field is ``name`` (as Caffe and our writer put it)."""
    head = b"\x0a" + bytes([len(name)]) + name
    return next(f for f in _fields_of(raw) if f.path == (100,) and raw[f.value_start:].startswith(head))


def test_a_parameter_layer_given_twice_is_refused(tmp_path):
    # Found as "silent structure change": Caffe copies both records in turn and keeps the last one's blobs
    seed = fuzz.write_seeds(tmp_path / "seeds")["v2_packed"].read_bytes()
    record = _layer_record(seed, b"conv1/bn/scale")
    path = tmp_path / "twice.caffemodel"
    path.write_bytes(seed[:record.end] + seed[record.tag_start:record.end] + seed[record.end:])
    weights = caffe_io.read_weights(path)
    with pytest.raises(SenetZooError, match="two parameter layers named 'conv1/bn/scale'"):
        param_layers_by_name(weights)
    with pytest.raises(SenetZooError, match="two parameter layers"):
        fuzz.convert_tiny(path)


def test_an_error_naming_a_type_with_line_breaks_is_one_line(tmp_path):
    # Found as a two-line SenetZooError: the layer's type string came from the file
    net = fuzz_seeds.tiny_net()
    net.layers[3].type = "Scale\nINFO: converted"
    net.layers[3].proto.type = net.layers[3].type
    path = tmp_path / "type.caffemodel"
    caffe_io.write_caffemodel(net, path)
    with pytest.raises(SenetZooError) as info:
        fuzz.convert_tiny(path)
    message = str(info.value)
    assert message.splitlines() == [message] and "Scale\\nINFO" in message
    assert str(SenetZooError("a\nb.caffemodel", "x\ry\u2028z\x85\tw")) == "a\\nb.caffemodel: x\\ry\\u2028z\\x85\tw"


@pytest.mark.parametrize("kind", ["caffe", "json"])
def test_reading_a_small_label_file_allocates_little(tmp_path, kind):
    # Found as 256 MiB traced for a 2 KB file: read(limit + 1) allocates the whole limit up front
    path = fuzz.write_seeds(tmp_path)[f"labels_{kind}"]
    tracemalloc.start()
    try:
        label_files.read_label_file(path, kind)
        jsonio.load_path(tmp_path / "labels_json.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_more_layer_records_than_any_net_are_refused(tmp_path):
    # Found as 3 s (30 s traced) for 300 KB: 99,990 empty layer records, each ~30 us of Python, were read
    seed = fuzz.write_seeds(tmp_path / "seeds")["v2_packed"].read_bytes()
    path = tmp_path / "layers.caffemodel"
    path.write_bytes(seed + _field(100, b"") * caffe_io.MAX_LAYERS)
    with pytest.raises(SenetZooError, match=f"more than {caffe_io.MAX_LAYERS} layer records"):
        caffe_io.read_weights(path)
    path.write_bytes(seed + _field(100, b"") * (caffe_io.MAX_LAYERS - 20))
    assert len(caffe_io.read_weights(path).layers) == caffe_io.MAX_LAYERS - 11  # a net that big still reads


def test_empty_packed_fields_between_value_records_are_no_values(tmp_path):
    # Found as 3-10 s for 0.7-1.4 MB: 2 x 10^5 records each followed by an empty packed field were 4 x 10^5
    # segments to gather; an empty field now adds none (the time bound itself needs the batched gather too)
    net = fuzz_seeds.tiny_net()
    path = tmp_path / "seed.caffemodel"
    caffe_io.write_caffemodel(net, path)
    seed = path.read_bytes()
    record = _layer_record(seed, b"fc")
    blobs = [f for f in _fields_of(seed) if f.ancestors == (record,) and f.number == 7]
    bias = blobs[1]
    values = net.layer("fc").blobs[1]
    body = b"".join(b"\x2d" + v.tobytes() + b"\x2a\x00" for v in values) + _field(7, _field(1, b"\x03"))
    path.write_bytes(_splice(seed, _inside(bias), bias.value_start, bias.end, body))
    assert caffe_io.read_weights(path).layer("fc").blobs[1].tolist() == values.tolist()
