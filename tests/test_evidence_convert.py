"""Evidence that binds: byte-identical conversions, Caffe's exact blob rules, nothing partial left behind."""
import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from senet_zoo import registry
from senet_zoo.converters import caffe_io, convert as convert_mod
from senet_zoo.converters.convert import CONVERTER_VERSION, convert, map_weights
from senet_zoo.errors import SenetZooError
from senet_zoo.files import remove_stale_temporaries

from support.evidence import seeded_release

# sha256 of model.safetensors / config.json converted from seeded_release("se_bn_inception", seed=7).
# A change here is a change of the output format: make it deliberately. The weights' bytes change only
# with CONVERTER_VERSION (records bind to them); config.json was re-pinned once without it, when timm's
# label_descriptions were added beside label_names (issue 17: descriptive, the weights are the same bytes).
PINNED_CONVERTER_VERSION = "0.2.0"
PINNED_SAFETENSORS_SHA256 = "afab7e5e0c59b1212350bf32ec75efe27b372dbbf09e0f9d1d96366f8d3fda77"
PINNED_CONFIG_SHA256 = "636e15f1da65da255dd8f31f727da26c94a81e12636429a137cd51fe349be74f"


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    return seeded_release("se_resnet50", tmp_path_factory.mktemp("r50"), seed=3)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------- reproducible bytes

def test_converting_twice_gives_identical_bytes(r50, tmp_path):
    _, caffemodel, _ = r50
    convert("se_resnet50", caffemodel, tmp_path / "a", allow_unknown_hash=True)
    convert("se_resnet50", caffemodel, tmp_path / "b", allow_unknown_hash=True)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # read back by the safetensors library itself
    from safetensors import safe_open

    with safe_open(str(tmp_path / "a" / "model.safetensors"), "np") as f:
        meta = f.metadata()
        assert meta["converter_version"] == CONVERTER_VERSION
        assert meta["model"] == "se_resnet50" and meta["class_order"] == "sorted-wnid"
        assert f.get_tensor("layer1.0.bn1.num_batches_tracked").shape == ()
        assert len(list(f.keys())) > 300
    header_len = int.from_bytes((tmp_path / "a" / "model.safetensors").read_bytes()[:8], "little")
    head = (tmp_path / "a" / "model.safetensors").read_bytes()[8:8 + header_len]
    assert head.startswith(b'{"__metadata__":{"class_order":') and header_len % 8 == 0
    # the library's metadata() is a hash map, so the order is read from the raw header: sorted keys, always
    # the same six (a fixed order is what makes the bytes, and the sha256 records bind to, reproducible)
    header = json.loads(head, object_pairs_hook=list)
    assert header[0][0] == "__metadata__"
    assert [key for key, _ in header[0][1]] == ["class_order", "converter_version", "format", "model",
                                                "source_file", "source_sha256"]


def test_pinned_sha256_of_a_seeded_conversion(tmp_path):
    _, caffemodel, _ = seeded_release("se_bn_inception", tmp_path / "release", seed=7)
    convert("se_bn_inception", caffemodel, tmp_path / "out", allow_unknown_hash=True)
    assert CONVERTER_VERSION == PINNED_CONVERTER_VERSION, "the output format changed: re-pin the hashes below"
    assert sha(tmp_path / "out" / "model.safetensors") == PINNED_SAFETENSORS_SHA256
    assert sha(tmp_path / "out" / "config.json") == PINNED_CONFIG_SHA256


def test_written_files_get_ordinary_permissions(r50, tmp_path):
    _, caffemodel, _ = r50
    old = os.umask(0o022)
    try:
        convert("se_resnet50", caffemodel, tmp_path / "out", allow_unknown_hash=True)
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------------------ Caffe's blob rules

def mapped(net, model="se_resnet50"):
    return map_weights(net, registry.get(model))


def with_blobs(net, layer_name, blobs, legacy=()):
    layers = [dataclasses.replace(l, blobs=blobs, legacy_shapes=legacy) if l.name == layer_name else l
              for l in net.layers]
    return dataclasses.replace(net, layers=layers)


def refused(net, *fragments):
    with pytest.raises(SenetZooError) as info:
        mapped(net)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.mark.parametrize("layer, keep, fragments", [
    ("classifier", 1, ["'classifier' has 1 blobs", "needs 2", "bias 1000"]),               # no bias: no zero fill
    ("conv1/7x7_s2/bn/scale", 1, ["'conv1/7x7_s2/bn/scale' has 1 blobs", "bias 64"]),      # Scale without beta
    ("conv2_1_1x1_down", 1, ["'conv2_1_1x1_down' has 1 blobs", "bias 16"]),                 # SE conv without bias
    ("conv1/7x7_s2/bn", 2, ["'conv1/7x7_s2/bn' has 2 blobs", "scale factor 1"]),
])
def test_missing_blobs_are_refused(r50, layer, keep, fragments):
    net = r50[2]
    refused(with_blobs(net, layer, net.layer(layer).blobs[:keep]), *fragments)


def test_an_extra_blob_is_refused(r50):
    net = r50[2]
    conv = net.layer("conv1/7x7_s2")
    refused(with_blobs(net, conv.name, [*conv.blobs, np.zeros(64, np.float32)]), "has 2 blobs", "needs 1")


@pytest.mark.parametrize("layer, index, shape, want", [
    ("classifier", 1, (1001,), "1000"),                    # would have lost its last value
    ("classifier", 0, (1000 * 2048,), "1000x2048"),        # flat weights: Caffe does not reshape
    ("conv2_1_3x3", 0, (64 * 64 * 9,), "64x64x3x3"),       # 1-D conv weight
    ("conv1/7x7_s2/bn", 2, (0,), "needs 1"),               # empty BatchNorm scale factor
    ("conv1/7x7_s2/bn", 2, (), "needs 1"),                 # a 0-d blob
    ("conv1/7x7_s2/bn/scale", 0, (1, 64, 1, 1), "needs 64"),
])
def test_wrong_shapes_are_refused_with_both_shapes(r50, layer, index, shape, want):
    net = r50[2]
    blobs = list(net.layer(layer).blobs)
    blobs[index] = np.zeros(shape, np.float32)
    message = refused(with_blobs(net, layer, blobs), f"'{layer}' blob {index}", want)
    assert ("x".join(map(str, shape)) if shape else "scalar") in message


def test_legacy_4d_shapes_are_accepted_as_caffe_does(r50):
    net = r50[2]
    fc = net.layer("classifier")
    legacy_blobs = [fc.blobs[0].reshape(1, 1, 1000, 2048), fc.blobs[1].reshape(1, 1, 1, 1000)]
    legacy = mapped(with_blobs(net, "classifier", legacy_blobs, legacy=(True, True)))
    plain = mapped(net)
    np.testing.assert_array_equal(legacy["last_linear.weight"], plain["last_linear.weight"])
    np.testing.assert_array_equal(legacy["last_linear.bias"], plain["last_linear.bias"])
    # the same 4-D shapes stored in the new 'shape' field are not legacy: Caffe compares them exactly
    refused(with_blobs(net, "classifier", legacy_blobs, legacy=(False, False)), "1x1x1000x2048")


def test_legacy_dims_are_read_from_the_file(tmp_path):
    from senet_zoo.converters import caffe_pb2

    proto = caffe_pb2.NetParameter(name="n")
    layer = proto.layer.add(name="fc", type="InnerProduct")
    blob = layer.blobs.add(num=1, channels=1, height=1, width=3)
    blob.data.extend([1, 2, 3])
    layer.blobs.add(shape=caffe_pb2.BlobShape(dim=[3])).data.extend([4, 5, 6])
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(proto.SerializeToString())
    read = caffe_io.read_weights(path).layer("fc")
    assert read.legacy_shapes == (True, False) and read.blobs[0].shape == (1, 1, 1, 3)


@pytest.mark.parametrize("dims, shape", [({"num": 1, "channels": 1, "width": 3}, "1x1x0x3"),
                                         ({"width": 3}, "0x0x0x3")])
def test_unset_legacy_dims_are_zero_as_in_caffe(tmp_path, dims, shape):
    """BVLC caffe.proto declares num/channels/height/width with default 0, and Blob::FromProto takes all four
    once any one is set: three values under 1x1x(unset)x3 are a 0-value blob, which Caffe refuses
    (CHECK_EQ(count_, data_size)); a default of 1 would accept them as 1x1x1x3."""
    from senet_zoo.converters import caffe_pb2

    proto = caffe_pb2.NetParameter(name="n")
    layer = proto.layer.add(name="fc", type="InnerProduct")
    layer.blobs.add(**dims).data.extend([1, 2, 3])
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(proto.SerializeToString())
    message = rf"layer 0 'fc' blob 0: 3 values for blob shape {shape} \(0 values\)"
    with pytest.raises(SenetZooError, match=message):
        caffe_io.read_weights(path)                    # the binary reader's own wire walk
    with pytest.raises(SenetZooError, match=message):
        caffe_io.net_from_proto(proto, path)           # the message reader (prototxt, in-memory nets)


def _bn_release(net, folder, bn, caffemodel_eps):
    """``net`` as a caffemodel in ``folder`` whose BatchNorm ``bn`` holds (mean·s, var·s, s) = (2, 3, 2), i.e.
    mean 1 and variance 1.5, and whose own layer definition says eps = ``caffemodel_eps``."""
    from senet_zoo.converters import caffe_pb2

    layers = []
    for layer in net.layers:
        if layer.name == bn:
            proto = caffe_pb2.LayerParameter()
            proto.CopyFrom(layer.proto)
            proto.batch_norm_param.eps = caffemodel_eps
            channels = layer.blobs[0].size
            layer = dataclasses.replace(layer, proto=proto, blobs=[
                np.full(channels, 2, np.float32), np.full(channels, 3, np.float32), np.array([2], np.float32)])
        layers.append(layer)
    caffemodel = folder / "SE-ResNet-50.caffemodel"
    caffe_io.write_caffemodel(dataclasses.replace(net, layers=layers), caffemodel)
    return caffemodel


def _converted(caffemodel, out, prototxt, *keys):
    from safetensors import safe_open

    convert("se_resnet50", caffemodel, out, prototxt, allow_unknown_hash=True)
    with safe_open(str(out / "model.safetensors"), "np") as f:
        return [f.get_tensor(key) for key in keys]


def test_batchnorm_eps_is_the_deploy_prototxts(r50, tmp_path):
    """Caffe builds the net from the deploy prototxt and Net::CopyTrainedLayersFrom copies blobs only: a
    BatchNorm's eps is the prototxt's even where the caffemodel's own layer definition says another. Our
    BatchNorm2d keeps torch's eps 1e-5, so Caffe's sqrt(var + eps) is stored as var + (eps - 1e-5)."""
    prototxt, _, net = r50
    bn = "conv1/7x7_s2/bn"
    caffemodel = _bn_release(net, tmp_path, bn, caffemodel_eps=1e-4)
    text = prototxt.read_text()
    at = text.index(f'name: "{bn}"')
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(text[:at] + text[at:].replace("use_global_stats: true", "use_global_stats: true\n    eps: 0.001", 1))
    keys = ("layer0.bn1.running_mean", "layer0.bn1.running_var")
    mean, var = _converted(caffemodel, tmp_path / "with", deploy, *keys)
    np.testing.assert_array_equal(mean, np.full(64, 1.0, np.float32))
    np.testing.assert_array_equal(var, np.full(64, 1.50099, np.float32))       # 1.5 + 0.001 - 0.00001
    # no prototxt given, none beside the caffemodel: the caffemodel's own definition is all there is
    _, var = _converted(caffemodel, tmp_path / "without", None, *keys)
    np.testing.assert_array_equal(var, np.full(64, 1.50009, np.float32))       # 1.5 + 0.0001 - 0.00001


@pytest.mark.parametrize("mode", ["FLOOR", "CEIL"])
def test_pooling_that_rounds_down_is_refused(r50, tmp_path, mode):
    """BVLC Caffe has ``round_mode: FLOOR`` (PoolingLayer::Reshape), but the release's networks round up and
    so do the models we convert into (timm's legacy SENets: ceil_mode=True): a FLOOR prototxt describes
    another network, whose numbers no conversion into these architectures reproduces. CEIL said aloud is
    the release's own rule."""
    prototxt, caffemodel, _ = r50
    text = prototxt.read_text()
    at = text.index("pool: MAX")
    given = tmp_path / f"{mode}.prototxt"
    given.write_text(text[:at] + f"round_mode: {mode}\n    " + text[at:])
    out = tmp_path / "out"
    if mode == "CEIL":
        convert("se_resnet50", caffemodel, out, given, allow_unknown_hash=True)
        assert (out / "model.safetensors").is_file()
        return
    with pytest.raises(SenetZooError) as info:
        convert("se_resnet50", caffemodel, out, given, allow_unknown_hash=True)
    assert str(info.value) == (f"{given}: Pooling layer 'pool1/3x3_s2' rounds down (round_mode: FLOOR); the "
                               "release's networks round up")
    assert not out.exists()


def test_prototxt_bias_term_must_match(r50, tmp_path):
    prototxt, caffemodel, _ = r50
    text = prototxt.read_text()
    bad = tmp_path / "nobeta.prototxt"
    marker = 'name: "conv1/7x7_s2/bn/scale"'
    at = text.index(marker)
    bad.write_text(text[:at] + text[at:].replace("bias_term: true", "bias_term: false", 1))
    with pytest.raises(SenetZooError, match="conv1/7x7_s2/bn/scale.*bias_term"):
        convert_mod.check_topology(caffe_io.read_prototxt(bad), registry.get("se_resnet50"))


# ---------------------------------------------------------------------------------- outputs and leftovers

def test_leftovers_of_a_killed_convert_are_removed_by_the_next(r50, tmp_path):
    _, caffemodel, _ = r50
    out = tmp_path / "out"
    code = (f"import os, signal\nfrom senet_zoo.converters import convert as c\nfrom senet_zoo.converters import safetensors_out as s\n"
            f"def die(*a, **k): os.kill(os.getpid(), signal.SIGKILL)\n"
            f"s.write_safetensors = die\n"
            f"c.convert('se_resnet50', {str(caffemodel)!r}, {str(out)!r}, allow_unknown_hash=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    assert len(left) == 1, list(tmp_path.iterdir())
    convert("se_resnet50", caffemodel, out, allow_unknown_hash=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_live_processes_keep_their_temporaries(tmp_path):
    mine = tmp_path / f".out.tmp-{os.getpid()}-0123abcd"
    mine.mkdir()
    parent = tmp_path / f".out.tmp-{os.getppid()}-0123abcd"
    parent.mkdir()
    assert remove_stale_temporaries(tmp_path / "out") == []
    assert mine.exists() and parent.exists()


@pytest.mark.parametrize("kind", ["symlink", "dangling"])
def test_symlinked_output_is_refused(r50, tmp_path, kind):
    _, caffemodel, _ = r50
    target = tmp_path / "real"
    if kind == "symlink":
        target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(SenetZooError, match="symbolic link"):
        convert("se_resnet50", caffemodel, link, allow_unknown_hash=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["link"] + (["real"] if kind == "symlink" else []))


def test_output_below_a_file_is_one_line(r50, tmp_path):
    _, caffemodel, _ = r50
    (tmp_path / "file").write_text("x")
    with pytest.raises(SenetZooError, match="not a folder"):
        convert("se_resnet50", caffemodel, tmp_path / "file" / "out", allow_unknown_hash=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_is_refused_before_any_work(r50, tmp_path):
    _, caffemodel, _ = r50
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(SenetZooError, match="not writable"):
            convert("se_resnet50", caffemodel, ro / "out", allow_unknown_hash=True)
    finally:
        ro.chmod(0o755)


def test_a_prototxt_given_as_caffemodel_is_named_before_hash_advice(r50, tmp_path):
    prototxt, _, _ = r50
    with pytest.raises(SenetZooError) as info:
        convert("se_resnet50", prototxt, tmp_path / "out")  # no --allow-unknown-hash: content comes first
    assert "prototxt" in str(info.value) and "hash" not in str(info.value)
