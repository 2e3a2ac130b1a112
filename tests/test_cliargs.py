"""Flags generated from config dataclasses (otgen.cliargs): names, types, defaults, help."""

import argparse
import dataclasses

import pytest

from otgen.cliargs import add_arguments, flag_of, from_args, option


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = option("a", "a name", choices=("a", "b"))
    size: int | None = option(None, "a size (default: the preset's, 3)", preset_default=True)
    rate: float = option(0.5, "a rate")
    stages: tuple[str, ...] | None = option(None, "stages", preset_default=True)
    progress: bool = option(True, "no progress bars")
    force: bool = option(False, "force it")
    hidden: int = 7  # not a flag


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Config)
    return parser, from_args(Config, parser.parse_args(argv))


def test_defaults_are_the_fields_defaults():
    _, cfg = _parse([])
    assert cfg == Config()


def test_every_kind_of_field_parses():
    _, cfg = _parse(["--name", "b", "--size", "4", "--rate", "0.25", "--stages", "x, y", "--no-progress",
                     "--force"])
    assert cfg == Config(name="b", size=4, rate=0.25, stages=("x", "y"), progress=False, force=True)


def test_help_shows_defaults_and_fields_without_option_are_not_flags(capsys):
    parser, _ = _parse([])
    text = parser.format_help()
    assert "a rate (default: 0.5)" in text and "--no-progress" in text and "--hidden" not in text
    assert "(default: the preset's, 3)" in text and "(default: None)" not in text
    assert [flag_of(f) for f in dataclasses.fields(Config) if "cli" in f.metadata] == [
        "--name", "--size", "--rate", "--stages", "--no-progress", "--force"]
    with pytest.raises(SystemExit):
        _parse(["--name", "c"])  # not a choice
    assert "invalid choice" in capsys.readouterr().err
