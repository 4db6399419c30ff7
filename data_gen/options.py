"""Configuration as dataclasses: every field is a YAML key and a ``--flag`` (underscores become dashes) with its
help text written once; defaults < ``--config`` YAML file < flags, then the tool's own checks.

``data_gen.distill`` (``data_gen/run/config.py``) and ``eval.run`` (``eval/config.py``) build their CLIs with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import shutil
import types
import typing
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from data_gen.errors import ConfigError
from data_gen.redact import looks_like_a_key


def option(default: Any, help: str, group: str | None = None, metavar: str | None = None, **extra: Any) -> Any:
    """A config field: its default, its one ``--help`` line, the ``--help`` section it opens (``group``; later
    fields stay in it), the placeholder for its value (``metavar``) and argparse extras (``choices``)."""
    meta = {"help": help, "group": group, "metavar": metavar, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _base_type(annotation: Any) -> Any:
    """``str | None`` -> ``str``; ``list[str]`` -> ``list``; ``dict[str, float]`` -> ``dict``."""
    hint = annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint, typing.get_args(hint)


def _parse_pairs(text: str, value_type: type) -> dict[str, Any]:
    """``a=1,b=2`` -> {"a": 1, "b": 2}."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected key=value pairs separated by commas, got {item!r}")
        try:
            out[key.strip()] = value_type(value.strip())
        except ValueError:
            kind = "a number" if value_type in (int, float) else value_type.__name__
            raise argparse.ArgumentTypeError(f"{item!r}: {value.strip()!r} is not {kind}") from None
    return out


def _parse_list(text: str) -> list[str]:
    """``a, b,c`` -> ["a", "b", "c"]."""
    return [v.strip() for v in text.split(",") if v.strip()]


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Check and convert a YAML value to the field's type, with a one-line error naming the key."""
    base, args = _base_type(typing.get_type_hints(cls)[name])
    if value is None:
        return None
    try:
        if base is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(v).strip() for v in items if str(v).strip()]
        if base is dict:
            if isinstance(value, str):
                return _parse_pairs(value, args[1] if args else str)
            if not isinstance(value, dict):
                raise TypeError("expected a mapping")
            value_type = args[1] if args else str
            return {str(k): value_type(v) for k, v in value.items()}
        if base is bool:
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if base is int:
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip()
                                                                          .lstrip("+-").isdigit())):  # fmt: skip
                raise TypeError("expected a whole number")  # 4.7 must not quietly become 4
            return int(value)
        if base is float and isinstance(value, bool):
            raise TypeError("expected a number")
        return base(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key {name!r}: {exc} (got {value!r})") from None


class OneLineHelp(argparse.RawDescriptionHelpFormatter):
    """``--help`` with one line per option: ``--[no-]flag`` for switches, short placeholders, a wide help column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36, width=max(120, shutil.get_terminal_size().columns))

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, argparse.BooleanOptionalAction):
            return "--[no-]" + action.option_strings[0].removeprefix("--")
        return super()._format_action_invocation(action)


PLACEHOLDERS = {int: "N", float: "X", list: "A,B", dict: "K=V,..."}


def build_parser(cls: type, description: str, epilog: str = "", prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of the config dataclass ``cls``, in the sections the fields
    open (``option(group=...)``); every default is None so that YAML can fill in."""
    usage = f"{prog or '%(prog)s'} [--config FILE] [options]"
    parser = argparse.ArgumentParser(
        prog=prog, usage=usage, description=description, epilog=epilog, formatter_class=OneLineHelp
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file with any of the keys below; flags override it")
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    section: Any = parser
    for f in dataclasses.fields(cls):
        if f.metadata.get("group"):
            name = f.metadata["group"]
            section = groups.get(name) or groups.setdefault(name, parser.add_argument_group(name))
        flag = "--" + f.name.replace("_", "-")
        base, args = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        value = ("on" if default else "off") if isinstance(default, bool) else show(default)
        value = value.replace(os.getcwd() + os.sep, "")  # an engine's path in this checkout, as the user types it
        shown = "" if default in (None, "", [], {}) else f" (default: {value})"
        help_text = f"{f.metadata['help']}{shown}".replace("%", "%%")  # argparse formats it
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if base is not bool:
            kwargs["metavar"] = f.metadata.get("metavar") or PLACEHOLDERS.get(base, "TEXT")
        if base is bool:
            section.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif base is list:
            section.add_argument(flag, type=_parse_list, **kwargs)
        elif base is dict:
            pairs = functools.partial(_parse_pairs, value_type=args[1] if args else str)
            pairs.__name__ = "key=value list"  # type: ignore[attr-defined]  # argparse names the type in errors
            section.add_argument(flag, type=pairs, **kwargs)
        else:
            section.add_argument(flag, type=base, choices=f.metadata.get("choices"), **kwargs)
    return parser


def show(value: Any) -> str:
    """A default as the user would type it: ``a=1,b=2``, ``a,b``, ``none``."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def read_config_file(path: Path, fields: set[str], seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config file's keys, checked against ``fields``; ``extends: OTHER.yaml`` (relative to the file) loads
    that file first and lets this one override it, so two tools can share one description of a data set."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (extended by {seen[-1]})" if seen else ""))
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `extends` goes round in a circle ({' -> '.join(map(str, seen))} -> {path})")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    unknown = sorted(set(loaded) - fields - {"extends"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
    parent = loaded.pop("extends", None)
    if parent is None:
        return loaded
    return {**read_config_file(path.parent / str(parent), fields, (*seen, path.resolve())), **loaded}


def load_config(args: argparse.Namespace, cls: type, check: Callable[[Any], None]) -> Any:
    """Merge: dataclass defaults < YAML file (``--config``, and what it ``extends``) < command-line flags; then
    ``check`` the result."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if args.config:
        loaded = read_config_file(Path(args.config), fields)
        values.update({k: _coerce(cls, k, v) for k, v in loaded.items()})
    values.update({k: v for k, v in vars(args).items() if k in fields and v is not None})
    config = cls(**values)
    check(config)
    return config


def check_finite(config: Any) -> None:
    """Every number of a config is a real number: ``nan`` and ``inf`` are refused (``--max-cost nan`` would
    disable the cap and write a bare NaN into manifest.json)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
        if isinstance(value, dict) and any(isinstance(v, float) and not math.isfinite(v) for v in value.values()):
            raise ConfigError(f"--{f.name.replace('_', '-')}: every value must be a finite number")


def check_key_variable(flag: str, name: str | None) -> None:
    """``--api-key-env`` takes a variable's NAME; a key given in its place is refused without repeating it."""
    if name and looks_like_a_key(name):
        raise ConfigError(
            f"{flag} takes the NAME of an environment variable that holds the key (e.g. DEEPSEEK_API_KEY), and "
            "the value given is not a variable name (it may be a key itself: keys never go on the command line "
            f"or in a config file); export KEY_VARIABLE=... and pass {flag} KEY_VARIABLE"
        )
