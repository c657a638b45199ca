"""The package a new user installs: sdist and wheel built from the tracked files (offline, no build
isolation), the wheel installed into a fresh venv outside the checkout, and the installed ``senet-zoo`` run
from there: ``list``, ``info senet154`` and a small conversion of release-format files.

The fresh venv gets its dependencies (torch, ...) through a ``.pth`` line naming the shared venv's
site-packages: that adds the folder to ``sys.path`` without running its ``.pth`` files, so the checkout's
editable install there stays inactive, and the test asserts that ``senet_zoo`` comes from the wheel.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_FILES = ("senet_zoo/data/checkpoints.yaml", "senet_zoo/data/devkit_wnids.txt",
              "senet_zoo/converters/caffe.proto", "senet_zoo/converters/caffe_pb2.py")


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """sdist from a copy of the tracked files, then the wheel from the unpacked sdist."""
    src = tmp_path_factory.mktemp("src") / "senet-zoo"
    files = _run(["git", "ls-files", "-z"], cwd=REPO).stdout.split("\0")
    for rel in filter(None, files):
        a, b = REPO / rel, src / rel
        if not a.exists() and not a.is_symlink():
            continue  # deleted in the working tree
        b.parent.mkdir(parents=True, exist_ok=True)
        if a.is_symlink():
            os.symlink(os.readlink(a), b)   # as a user's clone has it
        else:
            shutil.copy2(a, b)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
          "print(b.build_sdist(sys.argv[1]))", dist], cwd=src, env=_clean_env())
    (sdist,) = dist.glob("senet_zoo-*.tar.gz")
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as t:
        t.extractall(unpacked, filter="data")
    (root,) = unpacked.iterdir()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, root],
         cwd=unpacked, env=_clean_env())
    (wheel,) = dist.glob("senet_zoo-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory):
    _, wheel = built
    home = tmp_path_factory.mktemp("user")
    env_dir = home / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", env_dir])
    py = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", wheel],
         env=_clean_env())
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir, home


@pytest.mark.slow
def test_sdist_and_wheel_carry_registry_proto_and_class_files(built):
    sdist, wheel = built
    with tarfile.open(sdist) as t:
        members = {m.name.split("/", 1)[1]: m for m in t.getmembers() if "/" in m.name}
    assert {"README.md", "pyproject.toml", *DATA_FILES} <= set(members)
    assert members["senet_zoo/data/checkpoints.yaml"].isfile()       # the symlink's target, not a dangling link
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
        for f in DATA_FILES:
            assert f in infos, f
        registry = infos["senet_zoo/data/checkpoints.yaml"]
        assert not stat.S_ISLNK(registry.external_attr >> 16)          # a real file, not the symlink
        text = z.read(registry).decode()
        assert text == (REPO / "checkpoints.yaml").read_text() and "senet154:" in text
        meta = z.read(next(n for n in infos if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in infos if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "senet-zoo = senet_zoo.cli:main" in entry
    # the install line the README and the model cards give is this distribution
    from senet_zoo.hub.model_card import INSTALL_LINE

    assert "Name: senet-zoo" in meta.splitlines() and INSTALL_LINE == "pip install senet-zoo"
    assert INSTALL_LINE in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_the_installed_command_works_outside_the_checkout(venv):
    env_dir, home = venv
    exe, py = env_dir / "bin" / "senet-zoo", env_dir / "bin" / "python"
    env = _clean_env(HOME=str(home))
    where = _run([py, "-c", "import senet_zoo; print(senet_zoo.__file__)"], cwd=home, env=env).stdout.strip()
    assert where.startswith(str(env_dir)), where                    # the wheel, not the checkout

    listing = _run([exe, "list"], cwd=home, env=env).stdout
    assert len(listing.strip().splitlines()) == 8 and "senet154" in listing
    info = _run([exe, "info", "senet154"], cwd=home, env=env).stdout
    assert "SENet-154" in info and "115,088,984" in info and "multiply-adds" in info

    # demo-like: release-format files of the smallest model, converted by the installed command
    script = ("from pathlib import Path\n"
              "from senet_zoo import registry\n"
              "from senet_zoo.converters import caffe_io\n"
              "from senet_zoo.converters.release_layout import write_release_prototxt\n"
              "from senet_zoo.converters.synthetic import synthesize\n"
              "ckpt = registry.get('se_bn_inception')\n"
              "p = write_release_prototxt(ckpt.architecture, Path('release') / ckpt.prototxt)\n"
              "caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(p), seed=0), "
              "Path('release') / ckpt.caffemodel)\n")
    _run([py, "-c", script], cwd=home, env=env)
    out = _run([exe, "convert", "--model", "se_bn_inception", "--caffemodel", "release/SE-BN-Inception.caffemodel",
                "--output", "out/se_bn_inception", "--allow-unknown-hash"], cwd=home, env=env).stdout
    assert "model.safetensors" in out
    check = ("import senet_zoo, torch\n"
             "m = senet_zoo.create_model('se_bn_inception', pretrained='out/se_bn_inception')\n"
             "print(tuple(m(torch.zeros(1, 3, 224, 224)).shape))")
    assert _run([py, "-c", check], cwd=home, env=env).stdout.strip() == "(1, 1000)"
