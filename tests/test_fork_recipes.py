"""The slimming command lines YOLOv5 users copy from the popular forks run here unchanged, with their authors' meaning:
``train.py --bn_sparsity --sparsity_rate S``, midasklr's ``train.py --st --sr S`` and
``prune.py --weights X --percent 0.5 --cfg models/yolov5s.yaml``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import prune
import train
from models.yolo import Model
from tests.test_pruning import randomize_bn
from tests.test_train import make_dataset, read_results
from utils.checkpoint import atomic_save, load_checkpoint, make_checkpoint


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.mark.parametrize(("recipe", "rate"), [
    (["--bn_sparsity", "--sparsity_rate", "0.0005"], 0.0005),
    (["--st", "--sr", "0.0001"], 0.0001),
])
def test_sparsity_recipes_train_with_their_rate(recipe: list[str], rate: float, tmp_path: Path, coco128_dir: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Both recipes switch the BN-sparsity hook on with their rate: logged at the start, applied in epoch 0 (the
    hook's own ``sparsity/s`` column in results.csv) and kept in the checkpoint for --resume."""
    caplog.set_level("INFO")
    data = make_dataset(tmp_path / "ds", coco128_dir, n=4)
    res = train.main(["--weights", "", "--cfg", "models/yolov5n.yaml", "--data", str(data), "--imgsz", "64",
                      "--epochs", "1", "--batch-size", "4", "--workers", "0", "--noval", "--noplots",
                      "--project", str(tmp_path), "--name", "sparsity", *recipe])
    run = Path(res["save_dir"])
    assert any(r.getMessage().startswith(f"Sparsity training: S={rate} ") for r in caplog.records)
    assert read_results(run)[0]["sparsity/s"] == pytest.approx(rate)
    args = load_checkpoint(run / "weights" / "last.pt")["train_args"]
    assert args["bn_sparsity"] is True and args["sparsity_rate"] == rate
    assert json.loads((run / "opt.yaml").read_text())["sparsity_rate"] == rate


def test_sparsity_spellings_parse_to_the_same_options() -> None:
    """--st and -sr are the switch, --sr and -s the rate, in any combination."""
    for argv in (["--st", "--sr", "0.001"], ["-sr", "-s", "0.001"], ["--bn-sparsity", "--sparsity-rate", "0.001"]):
        o = train.parse_opt(argv)
        assert (o.bn_sparsity, o.sparsity_rate) == (True, 0.001), argv


@pytest.mark.parametrize(("argv", "message"), [
    (["--sr", "0.0001"], "--sparsity_rate 0.0001 does nothing without --bn_sparsity (alias --st)"),
    (["--sparsity_rate", "auto"], "--sparsity_rate auto does nothing without --bn_sparsity"),
    (["--st", "0.0005"], "unrecognized arguments: 0.0005"),  # --st is a switch, as in the fork
    (["--st"], "--bn_sparsity needs --sparsity_rate > 0"),
])
def test_sparsity_flag_mistakes_are_usage_errors(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        train.parse_opt(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_prune_with_cfg_as_the_forks_pass_it(tmp_path: Path) -> None:
    """``prune.py --weights X --percent 0.5 --cfg models/yolov5s.yaml``: the cfg is checked against the weights (it
    matches) and the model is pruned by half of its prunable channels. Sparsity-trained stand-in: random gammas."""
    weights = tmp_path / "yolov5s_sparse.pt"
    atomic_save(make_checkpoint(randomize_bn(Model("models/yolov5s.yaml"))), weights)
    recipe = ["--weights", str(weights), "--percent", "0.5", "--cfg", "models/yolov5s.yaml"]
    opt = prune.parse_opt(recipe)
    assert (opt.weights, opt.percent, opt.cfg) == (str(weights), 0.5, "models/yolov5s.yaml")
    res = prune.main([*recipe, "--imgsz", "64", "--noval", "--no-bn-recal", "--no-latency",
                      "--project", str(tmp_path)])
    assert res["percent"] == 0.5 and res["params"]["after"] < 0.75 * res["params"]["before"]
    assert (Path(res["save_dir"]) / "pruned_model.pt").is_file()
