"""ml_collections configs: load `configs/x.py[:arg]`, apply `a.b=v` overrides, fail early and clearly.

Config files expose `get_config(arg=None) -> ConfigDict`; `arg` picks a variant ("local" shrinks
to CPU size). Overrides are type-checked against the existing value, and an unknown key is an
error naming it, before anything is built or compiled.
"""
from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Sequence

import ml_collections


class ConfigError(ValueError):
    """A config that can't run: unknown key, wrong type or value. One line, naming the key."""


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`spec` is "path/to/config.py" or "path/to/config.py:arg"."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such file {path!r}")
    module_spec = importlib.util.spec_from_file_location(f"lantern_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # a config file is user code: report where it broke, in one line
        raise ConfigError(f"{path}: failed to load ({type(e).__name__}: {e})") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: has no get_config(arg=None)")
    cfg = module.get_config(arg or None)
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict")
    apply_overrides(cfg, overrides)
    return cfg


def _parse(text: str, current, key: str):
    if isinstance(current, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"config key {key!r}: expected a bool, got {text!r}")
    if current is None or isinstance(current, str):
        if current is None:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"config key {key!r}: cannot parse {text!r} as "
                          f"{type(current).__name__}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(current)(value)
    if not isinstance(value, type(current)) or isinstance(value, bool) != isinstance(current, bool):
        raise ConfigError(f"config key {key!r}: expected {type(current).__name__}, got {text!r}")
    return value


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies "a.b=v" strings (a leading "--config." is accepted)."""
    for item in overrides:
        item = item.removeprefix("--").removeprefix("config.")
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value")
        node, parts = cfg, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                raise ConfigError(f"unknown config key {'.'.join(parts[:i + 1])!r}")
            if i < len(parts) - 1:
                node = node[part]
        current = node[parts[-1]]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"config key {key!r} is a section, not a value")
        with node.unlocked():
            node[parts[-1]] = _parse(text, current, key)


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def one_of(cfg: ml_collections.ConfigDict, key: str, choices: Sequence) -> None:
    value = get(cfg, key)
    require(value in choices, f"config key {key!r}: {value!r} is not one of {list(choices)}")


def get(cfg: ml_collections.ConfigDict, key: str):
    node = cfg
    for part in key.split("."):
        if part not in node:
            raise ConfigError(f"config key {key!r} is missing")
        node = node[part]
    return node
