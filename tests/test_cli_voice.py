"""Every command answers a bad argument alike: one line on stderr, ``senet-zoo COMMAND: error: ...``, exit
status 2, nothing on stdout; a misspelt model name gets the nearest registry name; every option has help."""
from __future__ import annotations

import argparse

import pytest

from support.hub_fixtures import run_cli, tiny_folder

MISSING = "/nonexistent/senet-zoo-test"

# (argv, a fragment the one line must hold); "{tmp}" is the test's scratch folder
BAD = [
    (["bogus"], "invalid choice: 'bogus'"),
    (["convert"], "convert needs --model and --caffemodel"),
    (["convert", "--model", "se_resnet5", "--caffemodel", "x.caffemodel"], "did you mean se_resnet50?"),
    (["convert", "--model", "SE-ResNet-50", "--caffemodel", "x.caffemodel"], "did you mean se_resnet50?"),
    (["convert", "--model", "se_resnet50", "--caffemodel", MISSING], MISSING),
    (["convert", "--all"], "--all needs --release-dir DIR"),
    (["convert", "--all", "--release-dir", MISSING], f"{MISSING}: no such folder"),
    (["convert", "--all", "--release-dir", "{tmp}"], "contains none of the release's caffemodels"),
    (["convert", "--bogus"], "unrecognized arguments: --bogus"),
    (["convert", "--num-images", "0"], "--num-images: 0 is not at least 1"),
    (["verify"], "the following arguments are required"),
    (["verify", "--model", "senet15", "--caffemodel", "x", "--weights", "y"], "did you mean senet154?"),
    (["verify", "--model", "se_resnet50", "--caffemodel", MISSING, "--weights", "y"], "no such file"),
    (["verify", "--model", "se_resnet50", "--caffemodel", "x", "--weights", "y", "--seed", "x"], "invalid int"),
    (["info"], "the following arguments are required: NAME"),
    (["info", "senet15"], "did you mean senet154?"),
    (["info", "resnet50"], "unknown model 'resnet50'"),
    (["info", "se_resnet50", "--img-size", "0"], "--img-size: 0 is outside 32..1024"),
    (["info", "se_resnet50", "--img-size", "8"], "--img-size: 8 is outside 32..1024"),
    (["info", "se_resnet50", "--img-size", "big"], "'big' is not a whole number"),
    (["validate", "--data", "{tmp}"], "validate needs --model NAME (or --all --weights-dir DIR)"),
    (["validate", "--model", "se_resnext5", "--data", "{tmp}"], "did you mean se_resnext50_32x4d?"),
    (["validate", "--model", "se_resnet50", "--data", "{tmp}", "--preprocess", "opencv"], "invalid choice"),
    (["validate", "--model", "se_resnet50", "--data", "{tmp}", "--batch-size", "x"], "invalid int value"),
    (["push", "--model", "se_resnet50", "--weights", "{tmp}"], "required: --repo-id"),
    (["push", "--model", "senet145", "--weights", "{tmp}", "--repo-id", "a/b"], "did you mean senet154?"),
    (["push", "--model", "se_resnet50", "--weights", "{tmp}", "--repo-id", "no slash"], "--repo-id 'no slash'"),
    (["push", "--model", "se_resnet50", "--weights", "{tmp}", "--repo-id", "a/b", "--force"], "--force needs --reason"),
    (["push", "--model", "se_resnet50", "--weights", MISSING, "--repo-id", "a/b", "--dry-run", "{tmp}/d"],
     "no such converted folder"),
    (["download"], "required: NAME"),
    (["download", "se_resnet5"], "did you mean se_resnet50?"),
    (["download", "se_resnet50"], "no validated weights published on the Hub yet"),
    (["list", "--records", MISSING], "no such folder of validation records"),
    (["list", "--bogus"], "unrecognized arguments"),
    (["report", "--records", MISSING, "--output", "{tmp}/r.md"], "no such folder of validation records"),
    (["report", "--chart"], "expected one argument"),
    (["demo", "--seed", "x"], "invalid int value"),
    (["demo", "--work-dir"], "expected one argument"),
]


@pytest.mark.parametrize("argv,fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_argument_is_one_line_and_exit_2(argv, fragment, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing written beside the checkout, whatever a command might do
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc, out, err = run_cli(argv, capfd)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1, err
    command = argv[0] if argv[0] != "bogus" else ""
    assert lines[0].startswith(f"senet-zoo {command}".rstrip() + ": error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert out == "", out
    assert "Traceback" not in err


def _options():
    from senet_zoo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert p.description, f"senet-zoo {name} --help has no description"
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction):
                yield name, action


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, a in _options()
               if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, missing


def test_help_is_not_an_error(capfd):
    rc, out, err = run_cli(["info", "--help"], capfd)
    assert rc == 0 and "--img-size N" in out and err == ""


def test_push_refusal_is_said_once(tmp_path, capfd):
    weights = tiny_folder(tmp_path / "w")
    (tmp_path / "runs").mkdir()
    rc, out, err = run_cli(["push", "--model", "se_resnet50", "--weights", weights, "--repo-id", "a/b",
                            "--records", tmp_path / "runs", "--dry-run", tmp_path / "d"], capfd)
    assert rc == 3 and len(err.strip().splitlines()) == 1 and "no validation record" in err
    assert "REFUSES" not in out and "no validation record" not in out


def test_nearest_name_only_when_close():
    from senet_zoo.cli import unknown_model_message

    known = ["se_resnet50", "senet154"]
    assert "did you mean" not in unknown_model_message("vit_base", known)
    assert "did you mean senet154?" in unknown_model_message("SENet-154", known)
