"""A sweep's settings: a typed dataclass loaded from YAML, overridden by command-line flags, checked up front.

Each field declares its flag, help text and range check once (:func:`utils.options.opt`): sweep.py's settings flags
are generated from the fields, and the same check refuses a value from the YAML file and from a flag. Every mistake
(an unknown key, an empty grid, a wrong type or range, settings that contradict) is a ``ValueError`` that names where
the value came from (the YAML file or the flag) and the key, raised before any stage runs.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.prune.options import PruneOptions
from engine.train.options import TrainOptions
from pruning.masks import MODES
from utils.options import (Check, above, all_of, at_least, flag_name, imgsz_opt, in_range, not_a_file, not_empty, opt,
                           refusal, spellings)
from utils.yaml_io import read_yaml


__all__ = ["SweepConfig", "STAGE_KINDS", "BACKENDS", "SETTINGS", "load_config", "config_to_dict", "check_resumable"]

STAGE_KINDS = ("base", "sparsity", "prune", "finetune")
BACKENDS = ("local", "ray")
SETTINGS = "settings (override the config file)"  # sweep.py's help section of the settings flags
# Flags the sweep sets itself, every spelling; extra args may not repeat them (the stage graph would no longer match
# the runs).
_RESERVED_FLAGS = spellings(TrainOptions, "project", "name", "exist_ok", "weights", "resume", "epochs", "sparsity_rate",
                            "bn_sparsity", "ft_pruned_model") + spellings(PruneOptions, "percent")
# Settings that change what a finished stage produced; a resumed sweep must not change them. The grid may grow.
_RESULT_KEYS = ("weights", "data", "imgsz", "batch_size", "base_epochs", "sparsity_epochs", "finetune_epochs",
                "finetune_hyp", "mode", "round", "extra")


def _grid(each: Check, noun: str) -> Check:
    """A grid axis's check: at least one value, each passing ``each`` (a range check), none twice."""
    def check(v: list) -> str | None:
        if not v:
            return f"is empty; the grid needs at least one {noun}"
        return each(v) or (f"lists a value twice: {v}" if len(set(v)) != len(v) else None)
    return check


def _device_list(text: str) -> list[str]:
    """``0,1,2,3``, ``0 1``, ``cpu,cpu`` or one id -> its entries (the flag's type; YAML may also give a list)."""
    return [d.strip().lower() for d in text.replace(" ", ",").split(",") if d.strip()]


def _devices(v: list[str]) -> str | None:
    bad = [d for d in v if not (d.isdigit() or d in ("cpu", "mps"))]
    return f"lists {', '.join(map(repr, bad))}; each entry is one device: a CUDA id (0, 1, ...), cpu or mps" if bad \
        else None


@dataclass
class SweepConfig:
    """Settings of one sweep (``sweep.py --config FILE`` and/or flags).

    Base training once (or the weights as they are with ``base_epochs: 0``), sparsity training per rate, pruning per
    (rate, ratio), fine-tuning per pruned model; results in ``<project>/<name>``. Each field is a YAML key and a flag
    of sweep.py (``extra`` is the flag ``--extra KIND=FLAGS``, declared by sweep.py).
    """

    weights: str = opt("yolov5n.pt", "--weights", group=SETTINGS,
                       help="starting weights, e.g. yolov5n.pt (the base model when --base-epochs is 0)")
    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml", check=not_empty, group=SETTINGS)
    imgsz: int = imgsz_opt(320, "train, val and latency image size", group=SETTINGS)
    batch_size: int = opt(16, "--batch-size", check=at_least(1), group=SETTINGS,
                          help="training batch size (validation uses twice this, as train.py does)")
    base_epochs: int = opt(0, "--base-epochs", check=at_least(0), group=SETTINGS,
                           help="epochs of base training (0: use the weights as the base)")
    sparsity_rates: list[float] = opt([0.01, 0.03], "--sparsity-rates", type=float, nargs="+", group=SETTINGS,
                                      check=_grid(above(0, "sparsity training needs S > 0"), "rate"),
                                      help="sparsity rates S, e.g. 0.01 0.03")
    sparsity_epochs: int = opt(10, "--sparsity-epochs", help="epochs of sparsity training", check=at_least(1),
                               group=SETTINGS)
    prune_ratios: list[float] = opt([0.2, 0.3], "--prune-ratios", type=float, nargs="+", group=SETTINGS,
                                    check=_grid(in_range(0, 1), "ratio"),
                                    help="prune ratios (share of prunable channels)")
    finetune_epochs: int = opt(10, "--finetune-epochs", help="epochs of fine-tuning each pruned model",
                               check=at_least(1), group=SETTINGS)
    finetune_hyp: str = opt("hyp.finetune_prune.yaml", "--finetune-hyp", help="hyperparameters for fine-tuning",
                            check=not_empty, group=SETTINGS)
    mode: str = opt("normal", "--mode", choices=MODES, group=SETTINGS,
                    help="which BNs are penalised and pruned: 'normal' leaves residual-coupled channels alone, "
                         "'shortcut' includes them")
    round: int = opt(1, "--round", help="round kept channels up to a multiple of this (prune.py --round)",
                     check=at_least(1), group=SETTINGS)
    workers: int = opt(8, "--workers", help="max dataloader workers per stage", check=at_least(0), group=SETTINGS)
    jobs: int = opt(1, "--jobs", help="stages run at the same time on --device (local backend)", check=at_least(1),
                    group=SETTINGS)
    devices: list[str] = opt([], "--devices", type=_device_list, check=_devices, group=SETTINGS,
                             help="one stage at a time per listed device, e.g. 0,1,2,3 or cpu,cpu (list one twice for "
                                  "two stages on it)")
    backend: str = opt("local", "--backend", choices=BACKENDS, group=SETTINGS,
                       help="local: subprocesses here; ray: Ray tasks on a cluster (needs requirements-extra.txt)")
    ray_address: str = opt("", "--ray-address", group=SETTINGS,
                           help="backend ray: the cluster to join (default: $RAY_ADDRESS, else a Ray instance "
                                "started here)")
    ray_cpus: float = opt(1.0, "--ray-cpus", help="backend ray: CPUs each stage asks for (default 1)",
                          check=above(0), group=SETTINGS)
    project: str = opt("runs/sweep", "--project", help="sweeps go to project/name",
                       check=all_of(not_empty, not_a_file), group=SETTINGS)
    name: str = opt("exp", "--name", help="sweeps go to project/name (the same name resumes)", check=not_empty,
                    group=SETTINGS)
    # more flags per stage kind (base/sparsity/...): sweep.py's --extra KIND=FLAGS, one kind per flag, repeatable
    extra: dict[str, list[str]] = field(default_factory=dict)
    device: str = opt("", "--device", group=SETTINGS,
                      help="every stage's device, i.e. 0, or cpu (latency is always measured on CPU); with --backend "
                           "ray, how many GPUs each stage asks for")
    latency_repeats: int = opt(30, "--latency-repeats", help="timed forward passes per model", check=at_least(1),
                               group=SETTINGS)
    latency_warmup: int = opt(5, "--latency-warmup", help="untimed forward passes first", check=at_least(0),
                              group=SETTINGS)
    latency_threads: int = opt(0, "--latency-threads", check=at_least(0), group=SETTINGS,
                               help="CPU threads while timing (0: PyTorch's default; 1 is steadiest on a busy "
                                    "machine)")


def _origin_flag(key: str) -> str:
    """The flag a value given as an override stands for (its first spelling)."""
    return "--extra" if key == "extra" else flag_name(SweepConfig, key)


def _known() -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(SweepConfig)}


def _coerce(key: str, value: Any, typ: str, where: str) -> Any:
    """``value`` as the field type ``typ``, or a ValueError naming ``where`` and ``key``."""
    def bad(expected: str) -> ValueError:
        return ValueError(f"{where}: '{key}' must be {expected}, got {value!r}")

    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if typ == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise bad("a string")
        return str(value)  # e.g. `device: 0` reads as an int in YAML
    if typ == "list[float]":
        items = value if isinstance(value, (list, tuple)) else [value]  # one rate may be written without brackets
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items):
            raise bad("a list of numbers")
        return [float(v) for v in items]
    if typ == "list[str]":  # devices: `0,1,2,3`, `[0, 1]`, `cpu,cpu` or one id
        value = [] if value is None else value  # `devices:` with nothing after it
        if isinstance(value, str):
            return _device_list(value)
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, bool) or not isinstance(v, (str, int)) for v in items):
            raise bad("a list of devices such as 0,1,2,3 or cpu,cpu")
        return [str(v).strip().lower() for v in items if str(v).strip()]
    if typ == "dict[str, list[str]]":
        value = {} if value is None else value  # `extra:` with nothing under it
        if not isinstance(value, dict):
            raise bad(f"a mapping of stage kind ({', '.join(STAGE_KINDS)}) to flags")
        out = {}
        for kind, args in value.items():
            if kind not in STAGE_KINDS:
                raise ValueError(f"{where}: unknown stage kind '{kind}' under '{key}'; use one of "
                                 f"{', '.join(STAGE_KINDS)}")
            if args is None:
                args = []
            if isinstance(args, str):
                args = shlex.split(args)
            if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
                raise ValueError(f"{where}: '{key}.{kind}' must be a list of flags or one string, got {args!r}")
            args = [str(a) for a in args]
            for a in args:
                if a.split("=", 1)[0] in _RESERVED_FLAGS:
                    raise ValueError(f"{where}: '{key}.{kind}' sets {a.split('=', 1)[0]}, which the sweep sets for "
                                     "every stage; use the sweep's own setting instead")
            out[kind] = args
        return out
    raise TypeError(f"SweepConfig.{key}: unsupported field type {typ}")  # a programming error, not a user one


def _check_together(cfg: SweepConfig, origin: dict[str, str]) -> None:
    """Checks across settings (each field's own range was checked as it was read); ``origin[key]`` says where each
    value came from."""
    def fail(key: str, why: str) -> None:
        raise ValueError(f"{origin.get(key, 'default')}: '{key}' {why}")

    _check_placement(cfg, fail)
    if not cfg.weights and cfg.base_epochs == 0:
        fail("weights", "is empty: with base_epochs 0 the weights are the base model")


def _check_placement(cfg: SweepConfig, fail: Any) -> None:
    """backend, devices, jobs and device: each says one thing, so combinations that would contradict are refused."""
    if cfg.backend == "ray":
        if cfg.devices:
            fail("devices", "is for the local backend; with backend ray, Ray places each stage: set 'device' (cpu, "
                            "or GPU ids: that many GPUs per stage) instead")
        if cfg.jobs > 1:
            fail("jobs", "is for the local backend; with backend ray the cluster's resources decide how many stages "
                         "run at once (each asks for 'ray_cpus' CPUs and the GPUs of 'device')")
        return
    if cfg.ray_address:
        fail("ray_address", "is set but backend is 'local'; add --backend ray")
    if cfg.devices and cfg.device:
        fail("devices", f"and 'device' ({cfg.device!r}) are both set: 'devices' gives each parallel slot its own "
                        "device; leave 'device' empty")
    if cfg.devices and cfg.jobs > 1:
        fail("jobs", f"is {cfg.jobs} but 'devices' already makes one slot per listed device; list a device twice "
                     "to run two stages on it (e.g. 0,0,1,1)")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"sweep config {path} not found")
    raw = read_yaml(path, "sweep config")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a sweep config is a mapping of settings, got a {type(raw).__name__}")
    return raw


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Build a :class:`SweepConfig` from a YAML file (optional) and flag overrides (keys are field names).

    Args:
        path: YAML file with any subset of the fields.
        overrides: values that replace the file's (``None`` values are ignored: a flag that was not given).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown key, an empty grid, a wrong type or an out-of-range value; the message names the file
            (or the flag) and the key.
    """
    known = _known()
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        path = Path(path)
        for key, value in _read_yaml(path).items():
            if key not in known:
                close = difflib.get_close_matches(str(key), list(known), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"{path}: unknown key '{key}'{hint}; known keys: {', '.join(known)}")
            values[key] = _coerce(key, value, known[key], str(path))
            origin[key] = str(path)
    for key, value in (overrides or {}).items():
        if key not in known:
            raise ValueError(f"unknown sweep setting '{key}'; known: {', '.join(known)}")
        if value is None:
            continue
        where = _origin_flag(key)
        if key == "extra":  # per kind: a flag for one kind keeps the file's flags for the others
            value = {**values.get("extra", {}), **_coerce(key, value, known[key], where)}
        values[key] = _coerce(key, value, known[key], where)
        origin[key] = where
    for key, value in values.items():  # each field's choices and range check, as its flag has them
        if key != "extra" and (why := refusal(SweepConfig, key, value)):
            raise ValueError(f"{origin[key]}: '{key}' {why}")
    cfg = SweepConfig(**values)
    _check_together(cfg, origin)
    return cfg


def config_to_dict(cfg: SweepConfig) -> dict[str, Any]:
    """Plain values (for ``sweep.yaml`` beside the results)."""
    return asdict(cfg)


def check_resumable(saved_file: str | Path, cfg: SweepConfig) -> None:
    """Refuse to continue a sweep whose finished stages were made with other settings.

    The grid itself may change (new rates or ratios add stages; finished ones are reused), and so may jobs, devices,
    backend, workers, device and latency settings.

    Raises:
        ValueError: listing the settings that differ from ``saved_file``.
    """
    saved_file = Path(saved_file)
    if not saved_file.is_file():
        return
    saved = read_yaml(saved_file, "saved sweep settings") or {}
    now = config_to_dict(cfg)
    diff = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in _RESULT_KEYS if k in saved and saved[k] != now[k]]
    if diff:
        raise ValueError(f"{saved_file.parent} holds a sweep made with other settings ({'; '.join(diff)}); its "
                         f"finished stages would be mixed with new ones. Use another --name, or delete "
                         f"{saved_file.parent} to start over")
