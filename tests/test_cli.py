"""The ``otgen`` entry point: help, version, and unknown input."""

import pytest

from otgen import __version__
from otgen.cli import COMMANDS, main


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_unknown_command_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_interrupt_is_a_message_and_exit_130_not_a_traceback(capsys, monkeypatch):
    import experiments.reproduce as reproduce

    def interrupted(args):
        raise KeyboardInterrupt("signal 15")

    monkeypatch.setattr(reproduce, "main", interrupted)
    assert main(["reproduce", "--report-only"]) == 130
    err = capsys.readouterr().err
    assert "interrupted (signal 15)" in err and "rerun the same command to resume" in err


def test_the_console_script_leaves_an_interrupted_run_at_once_with_its_message():
    """``entry`` skips the interpreter's teardown after an interrupt (XLA's CPU client can hang there) but
    keeps the exit code and flushes the message."""
    import subprocess
    import sys

    code = ("import jax.numpy as jnp, otgen.cli as c\n"
            "jnp.ones(3).sum().block_until_ready()\n"  # an XLA client exists, as in a training run
            "def interrupted(argv=None):\n"
            "    print('saved at step 7', flush=False)\n"
            "    return 130\n"
            "c.main = interrupted\n"
            "c.entry()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and "saved at step 7" in done.stdout


def test_harness_commands_come_from_the_clone_and_say_so_where_it_is_missing(tmp_path, monkeypatch, capsys):
    import otgen.cli as cli

    harness = [name for name, (module, _) in COMMANDS.items() if module.startswith(cli.HARNESS)]
    assert sorted(harness) == ["ablation", "compare", "reproduce"]
    assert cli.load_command("compare").__name__ == "experiments.compare"  # found next to the package
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)  # an installation without its repository
    with pytest.raises(SystemExit, match="research harness in the repository's experiments/"):
        main(["reproduce", "--help"])
    assert cli.load_command("toy").__name__ == "otgen.pipelines.toy"  # the package's own pipelines still load
