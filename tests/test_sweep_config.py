"""sweep.py's settings declared once (engine/sweep/config.py): each SweepConfig field is a YAML key and a flag whose
parser is generated from the field; a flag given replaces the file's value and a flag left out keeps it; one check per
field refuses a bad value from the file (ValueError naming file and key) and from the command line (usage error, exit
2, naming the flag)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

import sweep
from engine.sweep import SweepConfig, load_config
from utils.options import check_options, spellings


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _load(argv: list[str]) -> SweepConfig:
    a, overrides = sweep.parse_opt(argv)
    return load_config(a.config, overrides)


def _flag_fields() -> list[str]:
    return [f.name for f in fields(SweepConfig) if f.metadata.get("cli")]


def test_help_lists_every_field_flag_with_its_aliases(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        sweep.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    listed = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
    expected = set(spellings(SweepConfig, *_flag_fields())) | {"--config", "--dry-run", "--extra"}
    assert {"--imgsz", "--img", "--img-size"} <= expected
    assert expected <= listed
    # every setting is a flag: the one field without a generated flag is extra, which sweep.py declares by hand
    assert {f.name for f in fields(SweepConfig)} - set(_flag_fields()) == {"extra"}
    settings = text.split("settings (override the config file):")[1]
    assert "--extra KIND=FLAGS" in settings and "--imgsz IMGSZ, --img IMGSZ, --img-size IMGSZ" in settings
    assert "--config" not in settings  # a script flag, not a setting


def test_only_the_flags_given_override_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.yaml", {"imgsz": 128, "batch_size": 4, "workers": 0, "mode": "shortcut",
                                     "devices": "cpu,cpu", "prune_ratios": [0.1]})
    assert sweep.parse_opt(["--config", str(f)])[1] == {}  # no flag given, no override
    cfg = _load(["--config", str(f), "--img", "96"])
    assert cfg.imgsz == 96  # given: the flag wins
    assert (cfg.batch_size, cfg.workers, cfg.mode, cfg.devices, cfg.prune_ratios) == \
        (4, 0, "shortcut", ["cpu", "cpu"], [0.1])  # not given: the file's, not the field defaults (16, 8, ...)
    # a flag given at its default value still replaces the file's value
    assert _load(["--config", str(f), "--batch-size", "16", "--workers", "8", "--mode", "normal"]).batch_size == 16
    assert _load(["--config", str(f), "--workers", "8"]).workers == 8
    assert _load(["--config", str(f), "--devices", ""]).devices == []


def test_a_file_and_the_same_flags_give_the_same_settings(tmp_path: Path) -> None:
    values = {"weights": "w.pt", "imgsz": 96, "sparsity_rates": [0.02, 0.05], "prune_ratios": [0.25],
              "mode": "shortcut", "devices": [0, 1], "ray_cpus": 2, "latency_threads": 1, "name": "n"}
    argv = ["--weights", "w.pt", "--img-size", "96", "--sparsity-rates", "0.02", "0.05", "--prune-ratios", "0.25",
            "--mode", "shortcut", "--devices", "0,1", "--ray-cpus", "2", "--latency-threads", "1", "--name", "n"]
    from_file = load_config(_write(tmp_path / "s.yaml", values))
    assert from_file == _load(argv) == load_config(None, values)
    assert from_file.devices == ["0", "1"] and from_file.ray_cpus == 2.0


@pytest.mark.parametrize("key, value, argv, message", [
    ("jobs", 0, ["--jobs", "0"], "must be >= 1, got 0"),
    ("imgsz", 0, ["--img", "0"], "must be >= 1, got 0"),
    ("latency_warmup", -1, ["--latency-warmup=-1"], "must be >= 0, got -1"),
    ("prune_ratios", [0.3, 1.0], ["--prune-ratios", "0.3", "1"], "must be in [0, 1), got [0.3, 1.0]"),
    ("sparsity_rates", [0.0], ["--sparsity-rates", "0"], "must be > 0 (sparsity training needs S > 0), got [0.0]"),
    ("sparsity_rates", [0.01, 0.01], ["--sparsity-rates", "0.01", "0.01"], "lists a value twice: [0.01, 0.01]"),
    ("ray_cpus", 0, ["--ray-cpus", "0"], "must be > 0, got 0"),
    ("devices", "0,gpu1", ["--devices", "0,gpu1"], "lists 'gpu1'; each entry is one device"),
    ("data", "", ["--data", ""], "must not be empty"),
])
def test_one_check_refuses_a_value_from_the_file_and_from_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                    key: str, value: object, argv: list[str],
                                                                    message: str) -> None:
    f = _write(tmp_path / "bad.yaml", {key: value})
    with pytest.raises(ValueError, match=re.escape(f"{f}: '{key}' {message}")):
        load_config(f)
    flag = spellings(SweepConfig, key)[0]
    with pytest.raises(SystemExit) as e:
        sweep.parse_opt(["--config", str(_write(tmp_path / "ok.yaml", {})), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[0].startswith("usage:")
    assert err[-1].startswith(f"sweep.py: error: {flag} ") and message in err[-1]
    # a program's overrides are named by the flag they stand for
    with pytest.raises(ValueError, match=re.escape(f"{flag}: '{key}' {message}")):
        load_config(None, {key: value})


def test_choices_and_folders_are_checked_for_the_file_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = _write(tmp_path / "bad.yaml", {"backend": "slurm"})
    with pytest.raises(ValueError, match=re.escape(f"{f}: 'backend' must be one of local, ray, got 'slurm'")):
        load_config(f)
    with pytest.raises(SystemExit):
        sweep.parse_opt(["--backend", "slurm"])
    assert "argument --backend: invalid choice: 'slurm'" in capsys.readouterr().err
    a_file = tmp_path / "runs"
    a_file.write_text("")
    f = _write(tmp_path / "p.yaml", {"project": str(a_file)})
    with pytest.raises(ValueError, match=re.escape(f"{f}: 'project' {a_file} is a file, not a folder")):
        load_config(f)
    with pytest.raises(SystemExit):
        sweep.parse_opt(["--project", str(a_file)])
    assert f"sweep.py: error: --project {a_file} is a file, not a folder" in capsys.readouterr().err


def test_defaults_pass_their_own_checks_and_extra_needs_kind_equals_flags(capsys: pytest.CaptureFixture) -> None:
    check_options(SweepConfig())  # load_config checks only the values it was given
    with pytest.raises(SystemExit) as e:
        sweep.parse_opt(["--extra=--cos-lr"])
    assert e.value.code == 2 and "--extra '--cos-lr': write KIND=FLAGS" in capsys.readouterr().err
    with pytest.raises(ValueError, match=re.escape("--extra: unknown stage kind 'train' under 'extra'")):
        _load(["--extra", "train=--cos-lr"])
