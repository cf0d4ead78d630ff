"""A sweep's settings: a typed dataclass loaded from YAML, overridden by command-line flags, checked up front.

Every mistake (an unknown key, an empty grid, a wrong type or range) is a ``ValueError`` that names where the value
came from (the YAML file or the flag) and the key, raised before any stage runs.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.prune_options import PruneOptions
from engine.train_options import TrainOptions
from pruning.masks import MODES
from utils.options import spellings
from utils.yaml_io import read_yaml


__all__ = ["SweepConfig", "STAGE_KINDS", "BACKENDS", "load_config", "config_to_dict", "check_resumable"]

STAGE_KINDS = ("base", "sparsity", "prune", "finetune")
BACKENDS = ("local", "ray")
# Flags the sweep sets itself, every spelling; extra args may not repeat them (the stage graph would no longer match
# the runs).
_RESERVED_FLAGS = spellings(TrainOptions, "project", "name", "exist_ok", "weights", "resume", "epochs", "sparsity_rate",
                            "bn_sparsity", "ft_pruned_model") + spellings(PruneOptions, "percent")
# Settings that change what a finished stage produced; a resumed sweep must not change them. The grid may grow.
_RESULT_KEYS = ("weights", "data", "imgsz", "batch_size", "base_epochs", "sparsity_epochs", "finetune_epochs",
                "finetune_hyp", "mode", "round", "extra")


@dataclass
class SweepConfig:
    """Settings of one sweep (``sweep.py --config FILE`` and/or flags).

    Base training once (or the weights as they are with ``base_epochs: 0``), sparsity training per rate, pruning per
    (rate, ratio), fine-tuning per pruned model; results in ``<project>/<name>``.
    """

    weights: str = "yolov5n.pt"  # starting weights (the base model when base_epochs is 0)
    data: str = "data/coco128.yaml"
    imgsz: int = 320  # training, validation and latency image size
    batch_size: int = 16  # training batch size (validation uses twice this, as train.py does)
    base_epochs: int = 0  # 0: use the weights as the base model without training
    sparsity_rates: list[float] = field(default_factory=lambda: [0.01, 0.03])
    sparsity_epochs: int = 10
    prune_ratios: list[float] = field(default_factory=lambda: [0.2, 0.3])
    finetune_epochs: int = 10
    finetune_hyp: str = "hyp.finetune_prune.yaml"
    mode: str = "normal"  # BNs penalised and pruned: 'normal' leaves residual-coupled channels, 'shortcut' includes
    round: int = 1  # prune.py --round: kept channels rounded up to a multiple of this
    workers: int = 8
    jobs: int = 1  # stages run at the same time on `device` (local backend)
    devices: list[str] = field(default_factory=list)  # one parallel slot per entry, e.g. ['0', '1'] or ['cpu', 'cpu']
    backend: str = "local"  # 'local' (subprocesses here) or 'ray' (Ray tasks on a cluster; the optional extra)
    ray_address: str = ""  # backend ray: the cluster to join ('' : $RAY_ADDRESS, else a Ray instance started here)
    ray_cpus: float = 1.0  # backend ray: CPUs each stage asks for
    project: str = "runs/sweep"
    name: str = "exp"
    extra: dict[str, list[str]] = field(default_factory=dict)  # more flags per stage kind (base/sparsity/...)
    device: str = ""
    latency_repeats: int = 30
    latency_warmup: int = 5
    latency_threads: int = 0  # CPU threads while timing (0: PyTorch's default); 1 is steadiest on a busy machine


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


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
        if not items:
            noun = "rate" if "rate" in key else "ratio"
            raise ValueError(f"{where}: '{key}' is empty; the grid needs at least one {noun}")
        return [float(v) for v in items]
    if typ == "list[str]":  # devices: `0,1,2,3`, `[0, 1]`, `cpu,cpu` or one id
        value = [] if value is None else value  # `devices:` with nothing after it
        items = value.replace(" ", ",").split(",") if isinstance(value, str) else value
        items = items if isinstance(items, (list, tuple)) else [items]
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


def _check_values(cfg: SweepConfig, origin: dict[str, str]) -> None:
    """Ranges and choices; ``origin[key]`` says where each value came from."""
    def fail(key: str, why: str) -> None:
        raise ValueError(f"{origin.get(key, 'default')}: '{key}' {why}")

    for key in ("imgsz", "batch_size", "sparsity_epochs", "finetune_epochs", "round", "jobs", "latency_repeats"):
        if getattr(cfg, key) < 1:
            fail(key, f"must be >= 1, got {getattr(cfg, key)}")
    for key in ("base_epochs", "workers", "latency_warmup", "latency_threads"):
        if getattr(cfg, key) < 0:
            fail(key, f"must be >= 0, got {getattr(cfg, key)}")
    if any(r <= 0 for r in cfg.sparsity_rates):
        fail("sparsity_rates", f"must all be > 0 (sparsity training needs S > 0), got {cfg.sparsity_rates}")
    if any(not 0 <= r < 1 for r in cfg.prune_ratios):
        fail("prune_ratios", f"must all be in [0, 1), got {cfg.prune_ratios}")
    for key in ("sparsity_rates", "prune_ratios"):
        values = getattr(cfg, key)
        if len(set(values)) != len(values):
            fail(key, f"lists a value twice: {values}")
    if cfg.mode not in MODES:
        fail("mode", f"must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    _check_placement(cfg, fail)
    if not cfg.weights and cfg.base_epochs == 0:
        fail("weights", "is empty: with base_epochs 0 the weights are the base model")
    for key in ("data", "finetune_hyp", "project", "name"):
        if not getattr(cfg, key):
            fail(key, "must not be empty")


def _check_placement(cfg: SweepConfig, fail: Any) -> None:
    """backend, devices, jobs and device: each says one thing, so combinations that would contradict are refused."""
    if cfg.backend not in BACKENDS:
        fail("backend", f"must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
    bad = [d for d in cfg.devices if not (d.isdigit() or d in ("cpu", "mps"))]
    if bad:
        fail("devices", f"lists {', '.join(map(repr, bad))}; each entry is one device: a CUDA id (0, 1, ...), cpu "
                        "or mps")
    if not cfg.ray_cpus > 0:
        fail("ray_cpus", f"must be > 0, got {cfg.ray_cpus}")
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
        if key == "extra":  # per kind: a flag for one kind keeps the file's flags for the others
            value = {**values.get("extra", {}), **_coerce(key, value, known[key], "--extra")}
        values[key] = _coerce(key, value, known[key], _flag(key))
        origin[key] = _flag(key)
    cfg = SweepConfig(**values)
    _check_values(cfg, origin)
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
