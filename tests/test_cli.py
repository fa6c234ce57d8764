"""The CLI surface: help everywhere, version, and one-line errors without tracebacks."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import genossa
from genossa.cli import cli

COMMANDS = ["config", "embed", "eval", "quickstart", "score", "shards", "train", "windows"]


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command}" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and genossa.__version__ in result.output


def test_config_presets_and_show():
    runner = CliRunner()
    presets = runner.invoke(cli, ["config", "presets"]).output.split()
    assert {"tiny", "small", "base", "large"} <= set(presets)
    shown = runner.invoke(cli, ["config", "show", "tiny", "--set", "train.steps=3"])
    assert shown.exit_code == 0 and "steps: 3" in shown.output


def _run(*args, tmp_path):
    # the script of the interpreter running the tests (the venv need not be activated)
    beside = Path(sys.executable).parent / "genossa"
    exe = str(beside) if beside.exists() else shutil.which("genossa")
    assert exe, "the genossa console script is not installed"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["config", "show", "bad.yaml"], "bad.yaml: unknown key 'modle' (did you mean 'model'?)"),
        (["config", "show", "tinny"], "tinny: neither a config file nor a preset"),
        (["config", "show", "tiny", "--set", "train.steps"], "expected KEY=VALUE"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, args, expected):
    (tmp_path / "bad.yaml").write_text("modle: {}\n")
    result = _run(*args, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("genossa: error: ")
    assert expected in result.stderr
