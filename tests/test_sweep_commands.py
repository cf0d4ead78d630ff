"""A sweep built from option objects gives the stage commands it wrote by hand before (issue 15).

``BEFORE`` holds the commands that ``plan_stages`` wrote, flag by flag, before the stages were rendered from
TrainOptions / PruneOptions / ValOptions: ``sweeps/example.yaml`` as it is, and a variant with a trained base, a
device, shortcut mode, ``round 8`` and extra flags for every kind. The new commands leave out flags at their defaults
and order flags by field, so each pair is compared by what the script makes of it: equal options, and no flag the old
command did not have.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import prune
import train
import val
from engine.sweep import load_config, plan_stages
from utils.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "sweeps" / "example.yaml"
VARIANT = {"base_epochs": 2, "device": "cpu", "mode": "shortcut", "round": 8, "batch_size": 8, "workers": 0,
           "sparsity_rates": [0.0005], "prune_ratios": [0.3],
           "extra": {"base": ["--cos-lr"], "prune": ["--importance", "relative"], "sparsity": ["--noval"],
                     "finetune": ["--noval", "--patience", "5"]}}
PARSERS = {"train.py": train.parse_opt, "prune.py": prune.parse_opt, "val.py": val.parse_opt}

# script and flags of every stage, as plan_stages wrote them by hand (sweep dir /SWEEP, repo root {repo})
BEFORE = {
    "example": {
        "base":
            "val.py --weights yolov5n.pt --data {repo}/data/coco128.yaml --imgsz 320 --workers 2 "
            "--batch-size 32 --project /SWEEP/base --name base --exist-ok",
        "sparsity_s0.03":
            "train.py --weights yolov5n.pt --data {repo}/data/coco128.yaml --imgsz 320 --workers 2 "
            "--batch-size 16 --epochs 3 --bn_sparsity --sparsity_rate 0.03 --sparsity_mode normal --noval "
            "--project /SWEEP/sparsity --name sparsity_s0.03 --exist-ok",
        "prune_s0.03_p0.2":
            "prune.py --weights /SWEEP/sparsity/sparsity_s0.03/weights/best.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 2 --batch-size 32 --percent 0.2 --mode normal "
            "--round 1 --no-latency --project /SWEEP/prune --name prune_s0.03_p0.2 --exist-ok",
        "finetune_s0.03_p0.2":
            "train.py --weights /SWEEP/prune/prune_s0.03_p0.2/pruned_model.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 2 --batch-size 16 --epochs 3 --ft_pruned_model "
            "--hyp {repo}/hyp.finetune_prune.yaml --noval --project /SWEEP/finetune --name "
            "finetune_s0.03_p0.2 --exist-ok",
        "prune_s0.03_p0.25":
            "prune.py --weights /SWEEP/sparsity/sparsity_s0.03/weights/best.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 2 --batch-size 32 --percent 0.25 --mode normal "
            "--round 1 --no-latency --project /SWEEP/prune --name prune_s0.03_p0.25 --exist-ok",
        "finetune_s0.03_p0.25":
            "train.py --weights /SWEEP/prune/prune_s0.03_p0.25/pruned_model.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 2 --batch-size 16 --epochs 3 --ft_pruned_model "
            "--hyp {repo}/hyp.finetune_prune.yaml --noval --project /SWEEP/finetune --name "
            "finetune_s0.03_p0.25 --exist-ok",
        "sparsity_s0.3":
            "train.py --weights yolov5n.pt --data {repo}/data/coco128.yaml --imgsz 320 --workers 2 "
            "--batch-size 16 --epochs 3 --bn_sparsity --sparsity_rate 0.3 --sparsity_mode normal --noval "
            "--project /SWEEP/sparsity --name sparsity_s0.3 --exist-ok",
        "prune_s0.3_p0.2":
            "prune.py --weights /SWEEP/sparsity/sparsity_s0.3/weights/best.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 2 --batch-size 32 --percent 0.2 --mode normal "
            "--round 1 --no-latency --project /SWEEP/prune --name prune_s0.3_p0.2 --exist-ok",
        "finetune_s0.3_p0.2":
            "train.py --weights /SWEEP/prune/prune_s0.3_p0.2/pruned_model.pt --data {repo}/data/coco128.yaml "
            "--imgsz 320 --workers 2 --batch-size 16 --epochs 3 --ft_pruned_model --hyp "
            "{repo}/hyp.finetune_prune.yaml --noval --project /SWEEP/finetune --name finetune_s0.3_p0.2 "
            "--exist-ok",
        "prune_s0.3_p0.25":
            "prune.py --weights /SWEEP/sparsity/sparsity_s0.3/weights/best.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 2 --batch-size 32 --percent 0.25 --mode normal "
            "--round 1 --no-latency --project /SWEEP/prune --name prune_s0.3_p0.25 --exist-ok",
        "finetune_s0.3_p0.25":
            "train.py --weights /SWEEP/prune/prune_s0.3_p0.25/pruned_model.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 2 --batch-size 16 --epochs 3 --ft_pruned_model "
            "--hyp {repo}/hyp.finetune_prune.yaml --noval --project /SWEEP/finetune --name "
            "finetune_s0.3_p0.25 --exist-ok",
    },
    "trained_base": {
        "base":
            "train.py --weights yolov5n.pt --data {repo}/data/coco128.yaml --imgsz 320 --workers 0 --device "
            "cpu --batch-size 8 --epochs 2 --cos-lr --project /SWEEP/base --name base --exist-ok",
        "sparsity_s0.0005":
            "train.py --weights /SWEEP/base/base/weights/best.pt --data {repo}/data/coco128.yaml --imgsz 320 "
            "--workers 0 --device cpu --batch-size 8 --epochs 3 --bn_sparsity --sparsity_rate 0.0005 "
            "--sparsity_mode shortcut --noval --project /SWEEP/sparsity --name sparsity_s0.0005 --exist-ok",
        "prune_s0.0005_p0.3":
            "prune.py --weights /SWEEP/sparsity/sparsity_s0.0005/weights/best.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 0 --device cpu --batch-size 16 --percent 0.3 "
            "--mode shortcut --round 8 --no-latency --importance relative --project /SWEEP/prune --name "
            "prune_s0.0005_p0.3 --exist-ok",
        "finetune_s0.0005_p0.3":
            "train.py --weights /SWEEP/prune/prune_s0.0005_p0.3/pruned_model.pt --data "
            "{repo}/data/coco128.yaml --imgsz 320 --workers 0 --device cpu --batch-size 8 --epochs 3 "
            "--ft_pruned_model --hyp {repo}/hyp.finetune_prune.yaml --noval --patience 5 --project "
            "/SWEEP/finetune --name finetune_s0.0005_p0.3 --exist-ok",
    },
}


@pytest.mark.parametrize(("config", "overrides"), [("example", {}), ("trained_base", VARIANT)])
def test_stage_commands_are_those_written_by_hand_before(config: str, overrides: dict) -> None:
    stages = plan_stages(load_config(EXAMPLE, overrides), "/SWEEP")
    assert [s.name for s in stages] == list(BEFORE[config])
    for s in stages:
        script, *old = BEFORE[config][s.name].replace("{repo}", str(REPO_ROOT)).split(" ")
        assert s.script == script
        parse = PARSERS[script]
        assert parse(s.args) == parse(old) == s.options, s.name
        assert set(s.args) <= set(old), (s.name, set(s.args) - set(old))  # nothing added, only defaults dropped


def test_extra_flags_are_checked_when_the_sweep_is_planned(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'extra.finetune' \(train.py\): unrecognized arguments: --cos_lr"):
        plan_stages(load_config(None, {"extra": {"finetune": ["--cos_lr"]}}), tmp_path)
    with pytest.raises(ValueError, match=r"'extra.prune' \(prune.py\): --min-channels must be >= 1, got 0"):
        plan_stages(load_config(None, {"extra": {"prune": ["--min-channels", "0"]}}), tmp_path)


def test_a_placed_stage_gets_its_device_in_its_options(tmp_path: Path) -> None:
    sp = plan_stages(load_config(None, {"device": "cpu", "sparsity_rates": [0.01]}), tmp_path)[1]
    sp.device = "1"
    argv = sp.argv()
    assert argv.count("--device") == 1 and argv[argv.index("--device") + 1] == "1"
    assert train.parse_opt(argv[2:]) == train.parse_opt([*sp.args, "--device", "1"])
