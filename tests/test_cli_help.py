"""The command line's first minute: `--help` and `--version` without importing torch, help
that says what every option does and its default, examples that parse, and `--quiet`
on every command that shows progress. (Start-up times: benchmarks/cli_startup.py.)"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import subprocess
import sys

import pytest

import fcnkit
from fcnkit.cli import build_parser, main


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """("data check", parser) for every command and sub-command."""
    found = []

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append((f"{prefix} {name}".strip(), sub))
                    walk(f"{prefix} {name}".strip(), sub)

    walk("", build_parser())
    return found


PARSERS = dict(_parsers())
LEAVES = [name for name, p in PARSERS.items()  # commands that run (not "data", which only dispatches)
          if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
SHOWS_PROGRESS = ["train", "eval", "predict", "data check", "data stats", "data fetch", "optimize", "bench", "demo"]

# runs the command as `python -m fcnkit` does; reports the exit code and whether torch was imported
PROBE = """
import json, runpy, sys
sys.argv = ["fcnkit", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("fcnkit", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
print("PROBE " + json.dumps({"code": code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def _probe(args: list[str]) -> tuple[dict, str]:
    run = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE ")), run.stdout


@pytest.mark.parametrize("args", [["--help"], ["--version"], *([*name.split(), "--help"] for name in PARSERS)],
                         ids=" ".join)
def test_help_and_version_do_not_import_torch(args):
    result, stdout = _probe(args)
    assert result == {"code": 0, "torch": False}
    assert stdout.strip()


def test_import_fcnkit_is_lazy_and_the_api_still_works():
    code = ("import sys, fcnkit; assert 'torch' not in sys.modules, 'import fcnkit imported torch'\n"
            "from fcnkit import Predictor; assert callable(fcnkit.create_model) and 'fcn8s' in fcnkit.list_models()\n"
            "assert set(fcnkit.__all__) <= set(dir(fcnkit)); print(Predictor.__name__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "Predictor"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fcnkit.nope  # noqa: B018


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"fcnkit {fcnkit.__version__}"
    assert fcnkit.__version__ == importlib.metadata.version("fcnkit")  # the literal follows pyproject.toml


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._VersionAction,
                                                              argparse._SubParsersAction))]


@pytest.mark.parametrize("name", PARSERS)
def test_every_option_says_what_it_does_and_its_default(name):
    parser = PARSERS[name]
    formatter = parser._get_formatter()
    for action in _options(parser):
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help is not argparse.SUPPRESS, f"fcnkit {name} {label}: no help"
        shown = formatter._expand_help(action)
        if action.option_strings and not any(action.default is v for v in (None, False, True)) \
                and action.default != []:
            assert "default" in shown, f"fcnkit {name} {label}: default {action.default!r} not in {shown!r}"


@pytest.mark.parametrize("name", ["", *PARSERS])
def test_help_text_has_no_escapes_or_rest_markup(name):
    text = (PARSERS[name] if name else build_parser()).format_help()
    assert "%%" not in text and "`" not in text, text


@pytest.mark.parametrize("name", LEAVES)
def test_every_command_has_examples_that_parse(name):
    epilog = PARSERS[name].epilog or ""
    assert epilog.startswith("examples:"), f"fcnkit {name}: no examples"
    examples = [line.strip() for line in epilog.splitlines()[1:] if line.strip().startswith("fcnkit ")]
    assert 1 <= len(examples) <= 3
    for line in examples:
        words = shlex.split(line.split("  #")[0])
        assert " ".join(words[1:]).startswith(name), line
        args = build_parser().parse_args(words[1:])  # a wrong example exits with a usage error
        assert callable(args.func)
    text = PARSERS[name].format_help()
    assert all(e.split("  #")[0] in text for e in examples), "examples are printed line by line"


@pytest.mark.parametrize("name", SHOWS_PROGRESS)
def test_commands_that_show_progress_can_be_quiet(name):
    flags = {s: a for a in PARSERS[name]._actions for s in a.option_strings}
    assert flags["--quiet"] is flags["--no-progress"] is flags["-q"]
    assert "progress" in flags["--quiet"].help


def test_literal_defaults_equal_the_library_constants():
    from fcnkit.data.fetch import SOURCES
    from fcnkit.detection.decode import DEFAULT_NMS_IOU

    assert PARSERS["eval"].get_default("nms_iou") == DEFAULT_NMS_IOU
    (name,) = [a for a in PARSERS["data fetch"]._actions if a.dest == "name"]
    assert sorted(name.choices) == sorted(SOURCES)


def test_info_still_refuses_an_unknown_model(capsys):
    assert main(["info", "fcn9s"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'fcn9s'" in err and "fcn8s" in err


def test_help_percent_is_printed_once():
    assert ">= 99.9%)" in PARSERS["export"].format_help().replace("\n", " ")


def test_ctrl_c_in_a_command_is_a_one_line_exit_130(tmp_path):
    """A folder of images being predicted, SIGINT: no traceback, exit 130, nothing half-written."""
    import signal
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    for i in range(40):
        Image.fromarray(np.full((360, 480, 3), i * 5, np.uint8)).save(tmp_path / f"{i:02d}.png")
    out = tmp_path / "out"
    env = {**os.environ, "FCNKIT_PROGRESS_INTERVAL": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "fcnkit", "predict", "camvid-fcn8s-lite0", str(tmp_path),
                             "--out", str(out), "--workers", "0"], stderr=subprocess.PIPE, text=True, env=env,
                            # as from a terminal: a suite run in the background (nohup, CI) ignores SIGINT
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:  # a plain progress line says prediction is under way, not done
        if "predict" in line and "/40" in line and not line.split(":", 1)[-1].strip().startswith("40/40"):
            break
    else:
        raise AssertionError("no progress line")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "fcnkit predict: interrupted" in err and "Traceback" not in err
    assert not [p for p in out.rglob("*") if "fcnkit-tmp" in p.name]
