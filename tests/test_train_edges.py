"""The trainer's edges: one ``model_from_checkpoint`` for loading, fine-tuning and resuming (strict, named errors),
``--resume`` resolved before the trainer starts, hooks handed in and reading a ``StepInfo``."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.train.hooks import StepInfo, TrainHook, settle_options
from engine.train.options import TrainOptions
from engine.train.setup import ResumeState, resolve_resume, restore_training_state
from engine.train.trainer import Trainer, build_trainer
from models.yolo import Model
from utils.checkpoint import CheckpointError, atomic_save, load_checkpoint, make_checkpoint
from models.checkpoint import load_model, model_from_checkpoint
from utils.ema import ModelEMA
from utils.optim import build_optimizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py
NAMES = ["a", "b", "c"]


def _model(cfg: str = "yolov5n.yaml", seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return Model(cfg, nc=len(NAMES), names=NAMES)


def _equal(model: nn.Module, state: dict) -> bool:
    own = model.state_dict()
    return own.keys() == state.keys() and all(
        torch.equal(own[k], state[k].float() if v.is_floating_point() else state[k]) for k, v in own.items())


def _saved(tmp_path: Path, model: nn.Module, name: str = "ckpt.pt", **extra: object) -> tuple[dict, Path]:
    path = tmp_path / name
    atomic_save(make_checkpoint(model, **extra), path)
    return load_checkpoint(path), path


def test_model_from_checkpoint_takes_the_entry_it_is_told(tmp_path: Path) -> None:
    model, other = _model(seed=0), _model(seed=1)
    ckpt, path = _saved(tmp_path, model, ema=other.state_dict())
    ema = model_from_checkpoint(ckpt, path, "ema")
    raw = model_from_checkpoint(ckpt, path, "model")
    assert _equal(ema, other.state_dict()) and _equal(raw, model.state_dict())
    assert ema.training and next(ema.parameters()).dtype == torch.float32  # ready to train
    assert _equal(load_model(path)[0], other.state_dict()) and _equal(load_model(path, use_ema=False)[0],
                                                                      model.state_dict())
    ckpt["ema"] = None  # a finished run keeps its (EMA) weights under 'model'
    assert _equal(model_from_checkpoint(ckpt, path, "ema"), model.state_dict())
    half = model_from_checkpoint(ckpt, path, "model", inference=True, half=True)
    assert not half.training and next(half.parameters()).dtype == torch.float16
    with pytest.raises(ValueError, match="inference"):
        model_from_checkpoint(ckpt, path, "model", fuse=True)
    with pytest.raises(ValueError, match="'ema' or 'model'"):
        model_from_checkpoint(ckpt, path, "best")


def test_weights_of_another_shape_are_an_error_naming_the_file(tmp_path: Path) -> None:
    ckpt, path = _saved(tmp_path, _model())
    ckpt["model"] = _model("yolov5s.yaml").state_dict()
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + r": checkpoint entry 'model' does not fit"):
        model_from_checkpoint(ckpt, path, "model")
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + r": checkpoint entry 'model' does not fit"):
        model_from_checkpoint(ckpt, path, "ema", nc=2, rehead=True)  # re-heading loosens the output convs only


def test_other_classes_need_rehead_which_keeps_all_but_the_output_convs(tmp_path: Path) -> None:
    from pruning import slim_model

    model = _model()
    for m in model.modules():  # spread the gammas so that pruning has something to choose
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.0, 1.0)
    pruned, _ = slim_model(model, 0.3)
    ckpt, path = _saved(tmp_path, pruned)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*has 3 classes, 2 are needed"):
        model_from_checkpoint(ckpt, path, "model", nc=2)  # resuming on other data must not re-head silently
    two = model_from_checkpoint(ckpt, path, "model", nc=2, names=["x", "y"], rehead=True)
    head = f"model.{len(two.model) - 1}.m."
    own, src = two.state_dict(), ckpt["model"]
    assert sorted(k for k in own if not torch.equal(own[k], src[k])) == sorted(k for k in own if k.startswith(head))
    assert own[f"{head}0.weight"].shape[0] == 3 * (5 + 2) and two.names == ["x", "y"]


def _training_run(tmp_path: Path, epochs: int = 3) -> tuple[Path, Model, ModelEMA, torch.optim.Optimizer]:
    model = _model()
    optimizer = build_optimizer(model, "SGD", 0.01, 0.937, 0.0005)
    ema = ModelEMA(model, updates=7)
    opt = TrainOptions(weights="", cfg="yolov5n.yaml", epochs=epochs, device="cpu", project=str(tmp_path))
    path = tmp_path / "run" / "weights" / "last.pt"
    atomic_save(make_checkpoint(model, epoch=0, best_fitness=0.25, ema=ema.state_dict()["ema"], updates=7,
                                optimizer=optimizer.state_dict(), train_args=asdict(opt)), path)
    return path, model, ema, optimizer


def test_resume_is_resolved_before_the_trainer_starts(tmp_path: Path) -> None:
    path, model, ema, optimizer = _training_run(tmp_path)
    opt, resume = resolve_resume(TrainOptions(resume=str(tmp_path / "run"), epochs=99))
    assert isinstance(resume, ResumeState) and resume.path == path
    assert opt.epochs == 3 and opt.save_dir == str(tmp_path / "run") and opt.weights == str(path)  # stored options
    assert resolve_resume(TrainOptions(epochs=5)) == (TrainOptions(epochs=5), None)
    trainer = build_trainer(TrainOptions(resume=str(path)), hooks=[])
    assert trainer.resume.path == path and trainer.opt.epochs == 3 and trainer.hooks == []

    fresh = ModelEMA(_model(seed=5))
    start, best = restore_training_state(resume, build_optimizer(model, "SGD", 0.01, 0.937, 0.0005), fresh, 3)
    assert (start, best) == (1, 0.25) and fresh.updates == 7 and _equal(fresh.ema, ema.state_dict()["ema"])
    resumed = model_from_checkpoint(resume.ckpt, path, "model")
    assert _equal(resumed, model.state_dict())
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + r": checkpoint entry 'ema' does not fit"):
        restore_training_state(resume, build_optimizer(model, "SGD", 0.01, 0.937, 0.0005),
                               ModelEMA(_model("yolov5s.yaml")), 3)


def test_build_trainer_picks_the_hooks_the_options_ask_for() -> None:
    from engine.train.sparsity_hook import SparsityHook

    opt = TrainOptions(bn_sparsity=True, sparsity_rate=0.001, device="cpu")
    assert [type(h) for h in build_trainer(opt).hooks] == [SparsityHook]
    assert build_trainer(opt, hooks=[]).hooks == []
    assert Trainer(opt).hooks == []  # the trainer itself adds none


class Recorder(TrainHook):
    """Records every call and what it was given; settles one option."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, StepInfo]] = []

    def before_train(self, step: StepInfo) -> dict[str, object]:
        self.calls.append(("before_train", step))
        return {"sparsity_rate": 0.25}

    def extra_loss(self, step: StepInfo, imgs: torch.Tensor, preds: list[torch.Tensor],
                   targets: torch.Tensor) -> torch.Tensor | None:
        self.calls.append(("extra_loss", step))
        return None

    def before_step(self, step: StepInfo) -> None:
        self.calls.append(("before_step", step))

    def after_epoch(self, step: StepInfo) -> dict[str, float]:
        self.calls.append(("after_epoch", step))
        return {"x/recorded": 1.0}

    def after_train(self, step: StepInfo) -> None:
        self.calls.append(("after_train", step))


def test_hooks_receive_a_step_info_and_settle_options(tmp_path: Path, coco128_dir: Path) -> None:
    from tests.test_train import make_dataset, read_results

    data = make_dataset(tmp_path / "d", coco128_dir, n=8)
    rec = Recorder()
    opt = TrainOptions(weights="", cfg="models/yolov5n.yaml", data=str(data), imgsz=64, epochs=2, batch_size=4,
                       workers=0, noval=True, noplots=True, device="cpu", project=str(tmp_path / "runs"))
    trainer = Trainer(opt, hooks=[rec])
    trainer.train()
    names = [c[0] for c in rec.calls]
    epoch = ["extra_loss", "before_step"] * 2 + ["after_epoch"]  # 2 batches of 4, a step after each in the warmup
    assert names == ["before_train"] + epoch * 2 + ["after_train"]
    assert all(isinstance(s, StepInfo) for _, s in rec.calls)
    steps = [s for n, s in rec.calls if n == "before_step"]
    assert [s.ni for s in steps] == [0, 1, 2, 3] and [s.epoch for s in steps] == [0, 0, 1, 1]
    assert all(s.nb == 2 and s.nw == 100 and s.accumulate == 1 and s.epochs == 2 for s in steps)
    first, last = rec.calls[0][1], rec.calls[-1][1]
    assert (first.epoch, first.ni, first.start_epoch, first.imgsz) == (0, -1, 0, 64) and last.epoch == 1
    assert first.opt is not trainer.opt and first.opt.sparsity_rate == 0.0  # a copy, taken before the hook settled
    assert torch.load(trainer.wdir / "last.pt", weights_only=True)["train_args"]["sparsity_rate"] == 0.25
    assert [r["x/recorded"] for r in read_results(trainer.save_dir)] == [1.0, 1.0]
    with pytest.raises(ValueError, match="Recorder.before_train returned unknown options: nonsense"):
        settle_options(TrainOptions(), {"nonsense": 1}, rec)
