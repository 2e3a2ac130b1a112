"""Command-line flags generated from a config dataclass, so a flag, its help and its default
cannot drift from the field they set.

    @dataclasses.dataclass(frozen=True)
    class RunConfig:
        seed: int = option(0, "seed of the data draw, training and sampling")
        progress: bool = option(True, "progress bars")          # -> --no-progress

    add_arguments(parser, RunConfig)
    cfg = from_args(RunConfig, parser.parse_args())

Fields without :func:`option` are not flags.  ``preset_default=True`` (for fields a
preset fills) makes the flag's default ``None``, "keep the preset's value" (its help
text then states the default itself).
Supported types: int, float, str, bool, ``X | None`` of those, and ``tuple[str, ...]``
(a comma-separated list).  argparse alone does this in 80 lines; a library (tyro,
simple-parsing) would add a dependency for no flag we need.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

__all__ = ["option", "add_arguments", "from_args", "values_from_args", "flag_of"]


def option(default: Any, help: str, *, choices=None, metavar: str | None = None, flag: str | None = None,
           preset_default: bool = False, required: bool = False) -> Any:
    """A dataclass field that is also a command-line flag (``--field-name`` unless ``flag``)."""
    meta = {"help": help, "choices": choices, "metavar": metavar, "flag": flag, "preset_default": preset_default,
            "required": required}
    return dataclasses.field(default=default, metadata={"cli": meta})


def flag_of(field: dataclasses.Field) -> str:
    meta = field.metadata["cli"]
    if meta["flag"]:
        return meta["flag"]
    if field.type in (bool, "bool") and field.default is True:
        return "--no-" + field.name.replace("_", "-")
    return "--" + field.name.replace("_", "-")


def _base_type(tp) -> tuple[type, bool]:
    """(the scalar type, whether it is a comma-separated tuple) of an annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        return typing.get_args(tp)[0], True
    return tp, False


def _csv(kind):
    def parse(text: str):
        return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
    return parse


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per :func:`option` field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "cli" not in f.metadata:
            continue
        meta = f.metadata["cli"]
        kind, is_list = _base_type(hints[f.name])
        shown = f.default
        if kind is bool:
            action = "store_false" if f.default is True else "store_true"
            parser.add_argument(flag_of(f), dest=f.name, action=action, help=meta["help"],
                                default=None if meta["preset_default"] else f.default)
            continue
        if is_list and f.default:
            shown = ",".join(map(str, f.default))
        # a preset-filled field's help says its default itself
        quiet = meta["required"] or meta["preset_default"]
        help_text = meta["help"] + ("" if quiet else f" (default: {shown})")
        kw = dict(dest=f.name, help=help_text, type=_csv(kind) if is_list else kind, metavar=meta["metavar"])
        if meta["choices"] is not None:
            kw["choices"] = meta["choices"]
        if meta["required"]:
            kw["required"] = True
        else:
            kw["default"] = None if meta["preset_default"] else f.default
        parser.add_argument(flag_of(f), **kw)


def values_from_args(cls, args: argparse.Namespace) -> dict:
    """The parsed values of ``cls``'s :func:`option` fields (``None``: not given, for preset fields)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if "cli" in f.metadata and hasattr(args, f.name)}


def from_args(cls, args: argparse.Namespace, **extra):
    """``cls`` built from the parsed flags of its :func:`option` fields (and ``extra``)."""
    return cls(**{**values_from_args(cls, args), **extra})
