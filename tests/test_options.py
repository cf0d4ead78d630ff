"""Options declared once (utils/options.py): parsers generated from the options dataclasses keep every spelling,
their range checks fire alike on the command line (exit 2, the flag named) and in ``run(**kwargs)`` (FlagError), and
options objects render into command lines that parse back to equal objects."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields

import pytest

import detect
import export
import prune
import train
from engine.prune.options import PruneOptions
from engine.train.options import TrainOptions
from pruning.masks import MODES
from utils.cli import FlagError, python_api
from utils.options import (above, all_of, argument_group, at_least, build_parser, check_options, in_range, not_a_file,
                           not_empty, opt, parse_options, refusal, to_argv)


def _spellings(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    return {a.dest: set(a.option_strings) for a in parser._actions if a.dest != "help"}


def test_train_parser_has_every_spelling_of_the_forks_and_yolov5() -> None:
    s = _spellings(train._parser())
    assert s["bn_sparsity"] == {"--bn_sparsity", "--bn-sparsity", "--st", "-sr"}
    assert s["sparsity_rate"] == {"--sparsity_rate", "--sparsity-rate", "--sr", "-s"}
    assert s["imgsz"] == {"--imgsz", "--img", "--img-size"}
    assert s["teacher"] == {"--teacher", "--t_weights"} and s["kd_weight"] == {"--kd-weight", "--kd_weight"}
    assert s["ft_pruned_model"] == {"--ft_pruned_model", "--ft-pruned-model"}
    # every flag field, and nothing else (save_dir is filled in by the trainer)
    assert set(s) == {f.name for f in fields(TrainOptions)} - {"save_dir"}
    assert train.parse_opt(["--st", "-s", "0.01", "--img", "320"]) == \
        TrainOptions(bn_sparsity=True, sparsity_rate=0.01, imgsz=320)
    assert train.parse_opt([]) == TrainOptions()  # the parser's defaults are the dataclass's


def test_prune_parser_switches_and_modes() -> None:
    s = _spellings(build_parser(PruneOptions, "prune.py"))
    assert s["fold_beta"] == {"--no-fold-beta"} and s["latency"] == {"--no-latency"}
    assert prune.parse_opt(["--no-fold-beta", "--round", "auto"]) == PruneOptions(fold_beta=False, round="auto")
    assert prune.parse_opt([]) == PruneOptions()
    choices = [a.choices for a in build_parser(PruneOptions, "p")._actions if a.dest == "mode"]
    assert tuple(choices[0]) == MODES  # one tuple, pruning.masks.MODES
    assert [a.choices for a in train._parser()._actions if a.dest == "sparsity_mode"][0] == MODES


@pytest.mark.parametrize(("module", "argv", "kwargs", "message"), [
    (prune, ["--percent", "1.5"], dict(percent=1.5), "--percent must be in [0, 1), got 1.5"),
    (prune, ["--round", "0"], dict(round=0), "--round must be >= 1, got 0"),
    (prune, ["--target-params", "-5"], dict(target_params=-5), "--target-params must be >= 0 (0: off), got -5"),
    (train, ["--sparsity_target", "1"], dict(sparsity_target=1.0), "--sparsity_target must be in [0, 1), got 1.0"),
    (train, ["--workers", "-1"], dict(workers=-1), "--workers must be >= 0, got -1"),
    (train, ["--sr", "0.01"], dict(sparsity_rate=0.01), "--sparsity_rate 0.01 does nothing without --bn_sparsity"),
    (detect, ["--img", "-1"], dict(imgsz=-1), "--imgsz must be >= 0 (0: the model's own), got -1"),
    (detect, ["--conf-thres", "1.5"], dict(conf_thres=1.5), "--conf-thres must be in [0, 1], got 1.5"),
    (detect, ["--line-thickness", "0"], dict(line_thickness=0), "--line-thickness must be >= 1, got 0"),
    (export, ["--batch-size", "0"], dict(batch_size=0), "--batch-size must be >= 1, got 0"),
    (export, ["--imgsz", "0", "320"], dict(imgsz=[0, 320]), "--imgsz must be >= 1, got [0, 320]"),
    (export, ["--img-size", "1", "2", "3"], dict(imgsz=[1, 2, 3]),
     "--imgsz takes one size or two (height width), got [1, 2, 3]"),
])
def test_a_check_fires_on_the_command_line_and_in_the_api(module, argv: list[str], kwargs: dict, message: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        module.parse_opt(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage:") and message in err.splitlines()[-1]
    with pytest.raises(FlagError, match=re.escape(message)):
        module.parse_opt(kwargs)
    with pytest.raises(FlagError, match=re.escape(message)):
        module.run(**kwargs)  # refused while parsing, before any model is loaded
    with pytest.raises(FlagError, match="must|does nothing|takes"):  # and on an object built in Python
        check_options(type(module.parse_opt([]))(**kwargs))


def test_resume_refuses_the_flags_it_would_ignore(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        train.parse_opt(["--resume", "runs/train/exp", "--epochs", "5", "--st", "--sr", "0.01"])
    err = capsys.readouterr().err.splitlines()[-1]
    assert e.value.code == 2 and "--epochs, --bn_sparsity, --sparsity_rate would be ignored" in err
    with pytest.raises(FlagError, match=r"--device would be ignored"):
        train.parse_opt(dict(resume="runs/train/exp/weights/last.pt", device="cpu"))
    assert train.parse_opt(["--resume", "runs/train/exp"]).resume == "runs/train/exp"
    # a bare --resume looks for the latest run under --project: that flag may come with it
    assert train.parse_opt(["--resume", "--project", "runs/x"]).project == "runs/x"
    with pytest.raises(FlagError, match=r"--project would be ignored"):
        train.parse_opt(dict(resume="runs/x/exp", project="runs/x"))


@pytest.mark.parametrize("options", [
    TrainOptions(bn_sparsity=True, sparsity_rate=1e-5, freeze=[1, 2], cache="disk", name="-odd", imgsz=320),
    TrainOptions(resume="True"),
    TrainOptions(bn_sparsity=True, sparsity_rate="auto", sparsity_mode="shortcut", cache="ram"),
    PruneOptions(percent=0.3, round="auto", fold_beta=False, latency=False, mode="shortcut", target_params=0),
])
def test_to_argv_parses_back_to_equal_options(options) -> None:
    argv = to_argv(options)
    parse = train.parse_opt if isinstance(options, TrainOptions) else prune.parse_opt
    assert parse(argv) == options
    assert len(to_argv(options, only_changed=False)) > len(argv)


def test_to_argv_writes_only_changed_flags_in_their_first_spelling() -> None:
    assert to_argv(TrainOptions(bn_sparsity=True, sparsity_rate=0.03, imgsz=320, workers=8)) == \
        ["--imgsz", "320", "--bn_sparsity", "--sparsity_rate", "0.03"]
    assert to_argv(PruneOptions(latency=False, percent=0.25)) == ["--percent", "0.25", "--no-latency"]
    assert to_argv(TrainOptions(resume="True")) == ["--resume"]


def test_a_new_options_class_needs_only_its_fields() -> None:
    @dataclass
    class Tiny:
        size: int = opt(3, "--size", "-n", help="how many", check=at_least(1))
        fast: bool = opt(False, "--fast", help="go fast")
        tags: list[str] = opt(["a"], "--tags", nargs="+", type=str, help="labels", group="extra")

    p = build_parser(Tiny, "tiny.py")
    assert Tiny(**vars(p.parse_args(["-n", "5", "--fast", "--tags", "x", "y"]))) == Tiny(5, True, ["x", "y"])
    assert "extra" in p.format_help() and "how many" in p.format_help()
    assert Tiny().tags is not Tiny().tags  # list defaults are copied
    with pytest.raises(FlagError, match=r"--size must be >= 1, got 0"):
        check_options(Tiny(size=0))


def test_a_hand_declared_flag_joins_the_section_of_the_generated_ones() -> None:
    @dataclass
    class Tiny:
        size: int = opt(3, "--size", help="how many", group="settings")
        fast: bool = opt(False, "--fast", help="go fast")

    p = build_parser(Tiny, "tiny.py", suppress=True)
    argument_group(p, "settings").add_argument("--more", action="append", help="more of it")
    argument_group(p, "script").add_argument("--config", help="a file")
    text = p.format_help()
    assert text.count("settings:") == 1 and text.count("script:") == 1
    section = text.split("settings:")[1].split("script:")[0]
    assert "--size" in section and "--more" in section and "--config" not in section
    # suppress: of the generated flags only those given come back, so a caller can tell them from defaults
    assert vars(p.parse_args(["--more", "a", "--more", "b"])) == {"more": ["a", "b"], "config": None}
    assert vars(p.parse_args(["--size", "3", "--fast"])) == {"size": 3, "fast": True, "more": None, "config": None}


def test_refusal_checks_a_value_from_elsewhere_as_its_flag_would() -> None:
    assert refusal(PruneOptions, "percent", 1.5) == "must be in [0, 1), got 1.5"
    assert refusal(PruneOptions, "percent", 0.5) is None
    assert refusal(PruneOptions, "mode", "fast") == "must be one of normal, shortcut, got 'fast'"
    assert refusal(PruneOptions, "mode", "shortcut") is None and refusal(PruneOptions, "name", "") is None
    with pytest.raises(KeyError, match="PruneOptions has no flag field 'precent'"):
        refusal(PruneOptions, "precent", 0.5)


@dataclass
class Needs:
    weights: str = opt("", "--weights", help="the model", required=True)
    size: int = opt(3, "--size", help="how many", check=at_least(1))


def test_a_required_flag_missing_is_a_usage_error_naming_it(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        parse_options(Needs, ["--size", "4"], "needs.py")
    err = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and err[0] == "usage: needs.py [-h] --weights WEIGHTS [--size SIZE]"
    assert err[-1] == "needs.py: error: the following arguments are required: --weights"
    assert parse_options(Needs, ["--weights", "a.pt"], "needs.py") == Needs("a.pt")
    # a script's run(**kwargs): the same refusal as an exception
    run = python_api(lambda flags: parse_options(Needs, flags, "needs.py"), "needs.py", "run(weights='a.pt')")
    with pytest.raises(FlagError, match=r"^the following arguments are required: --weights$"):
        run(size=4)
    assert run(weights="a.pt") == Needs("a.pt")
    # given but empty, or left at its default in Python: the default stands for "not given"
    with pytest.raises(SystemExit):
        parse_options(Needs, ["--weights", ""], "needs.py")
    assert capsys.readouterr().err.splitlines()[-1] == "needs.py: error: --weights is required: the model"
    with pytest.raises(FlagError, match=r"^--weights is required: the model$"):
        check_options(Needs())
    assert refusal(Needs, "weights", "") == "is required: the model" and refusal(Needs, "weights", "b.pt") is None
    # a parser of the given flags only (suppress) requires nothing
    assert vars(build_parser(Needs, "needs.py", suppress=True).parse_args(["--size", "2"])) == {"size": 2}


def test_above_refuses_the_bound_itself_and_in_range_keeps_its_ends() -> None:
    assert above(0)(0) == "must be > 0, got 0" and above(0)(-1.5) == "must be > 0, got -1.5"
    assert above(0)(1e-9) is None and above(0)("auto") is None  # non-numbers are the type's business
    assert above(0, "or 'auto'")([0.1, 0.0]) == "must be > 0 (or 'auto'), got [0.1, 0.0]"  # every item of a list
    assert above(0)([0.1, 2]) is None
    assert in_range(0, 1)(0) is None and in_range(0, 1)(1) == "must be in [0, 1), got 1"
    assert in_range(0, 1, open_lo=True)(0) == "must be in (0, 1), got 0" and in_range(0, 1, open_lo=True)(0.5) is None
    assert in_range(0, 1, closed=True, open_lo=True)(1) is None
    assert in_range(0, 1, closed=True, open_lo=True)([0.5, 0]) == "must be in (0, 1], got [0.5, 0]"
    assert in_range(0, 1, closed=True)(1.5) == "must be in [0, 1], got 1.5"


def test_not_empty_and_all_of(tmp_path) -> None:  # noqa: ANN001
    assert not_empty("") == not_empty([]) == "must not be empty" and not_empty("x") is None
    a_file = tmp_path / "f"
    a_file.write_text("")
    folder = all_of(not_empty, not_a_file)
    assert folder("") == "must not be empty" and folder(str(a_file)) == f"{a_file} is a file, not a folder"
    assert folder(str(tmp_path)) is None
    assert all_of()(0) is None


def test_a_strict_bound_on_a_flag_names_it() -> None:
    @dataclass
    class Rate:
        rate: float = opt(0.5, "--rate", check=above(0))

    with pytest.raises(FlagError, match=r"^--rate must be > 0, got 0.0$"):
        parse_options(Rate, {"rate": 0.0}, "rate.py")
    assert parse_options(Rate, {"rate": 1e-6}, "rate.py").rate == 1e-6
