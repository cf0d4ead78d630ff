"""The scripts' Python API: ``run(**kwargs)`` takes the flags as keywords, gives what the command line gives, refuses
unknown keywords and bad values with exceptions, and sets up the command line's logging."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import pytest

import prune
import train
import val
from utils.cli import FlagError, setup_logging

SCRIPTS = ("train", "val", "detect", "export", "prune")


@pytest.mark.slow
def test_val_run_gives_the_cli_mains_results(yolov5n_pt: Path, coco128_dir: Path, tmp_path: Path) -> None:
    flags = dict(weights=str(yolov5n_pt), data="data/coco128.yaml", imgsz=160, batch_size=32, workers=0, device="cpu")
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
    cli = val.main([*argv, "--project", str(tmp_path), "--name", "cli"])
    api = val.run(**flags, project=str(tmp_path), name="api")
    assert api["images"] == cli["images"] == 128
    assert 0.1 < api["mAP50_95"] == cli["mAP50_95"] and api["mAP50"] == cli["mAP50"]
    assert {**api["options"], "name": "cli"} == cli["options"]
    assert Path(api["save_dir"]) == tmp_path / "api" and (tmp_path / "api" / "results.json").is_file()


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_keyword_is_a_type_error_naming_it(script: str) -> None:
    with pytest.raises(TypeError, match=rf"{script}\.py has no flag for the keyword argument 'imgs' "
                                        r"\(did you mean 'imgsz'\?\)"):
        importlib.import_module(script).run(weights="w.pt", imgs=320)


def test_bad_value_raises_the_command_lines_message(capsys: pytest.CaptureFixture) -> None:
    for module, kwargs, argv in ((val, dict(imgsz=-1), ["--imgsz", "-1"]),
                                 (prune, dict(percent=1.5), ["--percent", "1.5"]),
                                 (train, dict(sparsity_rate=0.01), ["--sparsity_rate", "0.01"]),
                                 (val, dict(task="bogus"), ["--task", "bogus"]),
                                 (val, dict(batch_size="x"), ["--batch-size", "x"])):
        with pytest.raises(FlagError) as raised:
            module.run(**kwargs)
        with pytest.raises(SystemExit):
            module.main(argv)
        assert isinstance(raised.value, ValueError)
        assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {raised.value}")
    with pytest.raises(TypeError, match=r"single_cls is a switch \(--single-cls\): give True or False, not 'yes'"):
        val.run(single_cls="yes")
    with pytest.raises(FlagError, match=r"weights=None: --weights has no unset state"):
        val.run(weights=None)


def test_keywords_become_the_flags_they_name() -> None:
    opt = train.parse_opt(dict(bn_sparsity=True, sparsity_rate="auto", freeze=[0, 1], cache=True, resume=False,
                               name="-x", batch_size=4, cos_lr=False))
    assert (opt.bn_sparsity, opt.sparsity_rate, opt.freeze, opt.cache, opt.resume, opt.name, opt.batch_size,
            opt.cos_lr) == (True, "auto", [0, 1], "ram", "", "-x", 4, False)
    assert train.parse_opt(dict(cache="disk", resume=False, weights=Path("a.pt"))).__dict__ == \
           train.parse_opt(["--cache", "disk", "--weights", "a.pt"]).__dict__
    assert train.parse_opt(dict(resume=True, project=Path("runs/x"))).__dict__ == \
           train.parse_opt(["--resume", "--project", "runs/x"]).__dict__
    opt = prune.parse_opt(dict(fold_beta=False, latency=True, round="auto", percent=0.3))
    assert (opt.fold_beta, opt.latency, opt.round, opt.percent) == (False, True, "auto", 0.3)
    assert importlib.import_module("export").parse_opt(dict(imgsz=320, include="onnx")).include == ["onnx"]
    assert importlib.import_module("detect").parse_opt(dict(classes=None)).classes is None


def test_setup_logging_shows_info_once_however_often_called() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    try:
        root.handlers = []  # as in a fresh notebook kernel: nothing configured
        root.setLevel(logging.WARNING)
        setup_logging()
        setup_logging()
        assert len(root.handlers) == 1 and root.level == logging.INFO
        assert logging.getLogger("engine.val.validator").isEnabledFor(logging.INFO)
        mine = logging.StreamHandler()
        root.handlers = [mine]  # a program's own set-up is kept
        setup_logging()
        assert root.handlers == [mine]
    finally:
        root.handlers = handlers
        root.setLevel(level)  # setLevel, not an assignment: loggers cache what their level lets through
