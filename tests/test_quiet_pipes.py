"""Off a terminal, ``convert --all`` and ``push`` write lines, not progress bars: redirected stderr would
otherwise collect every carriage-return redraw of tqdm's bars (ours and huggingface_hub's)."""
from __future__ import annotations

import pytest

from senet_zoo import registry
from senet_zoo.converters import caffe_io
from senet_zoo.converters.release_layout import write_release_prototxt
from senet_zoo.converters.synthetic import synthesize
from support.hub_fixtures import TOKEN, run_cli, tiny_folder, write_record
from support.hub_server import FakeHub


def test_convert_all_into_a_pipe_has_no_bar(tmp_path, capfd):
    ckpt = registry.get("se_bn_inception")
    release = tmp_path / "release"
    prototxt = write_release_prototxt(ckpt.architecture, release / ckpt.prototxt)
    caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(prototxt), seed=1), release / ckpt.caffemodel)
    rc, out, err = run_cli(["convert", "--all", "--release-dir", release, "--output-root", tmp_path / "out",
                            "--allow-unknown-hash"], capfd)
    assert rc == 0, err
    assert "se_bn_inception:" in out and "\r" not in out + err and "model/s" not in err


@pytest.mark.parametrize("progress", [None, True])
def test_push_into_a_pipe_has_no_bars_unless_asked(progress, tmp_path, capfd, monkeypatch):
    from huggingface_hub import constants

    from senet_zoo.hub.push import push
    from senet_zoo.hub.records import find_records

    weights = tiny_folder(tmp_path / "w")
    write_record(tmp_path / "runs", weights, n=2_000, top1_err=22.40, top5_err=6.34,
                 published={"top1_err": 22.40, "top5_err": 6.35, "source": "reference runtime: test"})
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", None)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    capfd.readouterr()
    with FakeHub(token=TOKEN) as hub:
        push("se_resnet50", weights, "my-org/se_resnet50", find_records([tmp_path / "runs"]), endpoint=hub.url,
             progress=progress, log=lambda s: None)
    err = capfd.readouterr().err
    if progress is None:   # capfd's stderr is not a terminal
        assert "\r" not in err and "%|" not in err, err
    else:                  # asked for: huggingface_hub's bars are there
        assert "%|" in err or "\r" in err, err
