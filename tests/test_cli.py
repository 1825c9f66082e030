"""`emodet`: every command answers --help, an unknown command is one line, and the console script is installed."""
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in cli.COMMANDS)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([name, "--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out


def test_an_unknown_command_is_one_line(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_console_script_is_installed_in_the_venv():
    exe = Path(sys.executable).with_name("emodet")
    if not exe.exists():
        pytest.skip(f"{exe}: not installed (make setup runs `pip install -e .`)")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "commands:" in out.stdout
