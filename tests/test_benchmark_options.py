"""The benchmarks declare their flags once, on an options dataclass (utils/options.py): every spelling they had before
still parses, the parser's defaults are the dataclass's, and a value out of range exits with status 2 naming the
flag."""

from __future__ import annotations

from dataclasses import fields

import pytest

from benchmarks import backbones, compare, latency, prune_budgets, prune_sensitivity, slimming
from utils.options import build_parser, check_options

# Every spelling of every flag, as `--help` listed them before the options moved onto dataclasses.
SPELLINGS = {
    latency: {"weights": {"--weights"}, "imgsz": {"--imgsz", "--img", "--img-size"}, "batch_size": {"--batch-size"},
              "warmup": {"--warmup"}, "repeats": {"--repeats"}, "device": {"--device"}, "onnx": {"--onnx"},
              "int8": {"--int8"}, "openvino": {"--openvino"}, "data": {"--data"}, "threads": {"--threads"},
              "json": {"--json"}},
    compare: {"weights": {"--weights"}, "labels": {"--labels"}, "data": {"--data"}, "imgsz": {"--imgsz", "--img", "--img-size"},
              "batch_size": {"--batch-size"}, "workers": {"--workers"}, "repeats": {"--repeats"}, "json": {"--json"}},
    backbones: {"cfg": {"--cfg"}, "data": {"--data"}, "imgsz": {"--imgsz", "--img", "--img-size"}, "epochs": {"--epochs"},
                "batch_size": {"--batch-size"}, "optimizer": {"--optimizer"}, "sparsity_rate": {"--sparsity_rate"},
                "percent": {"--percent"}, "tol": {"--tol"}, "latency_imgsz": {"--latency-imgsz"},
                "repeats": {"--repeats"}, "threads": {"--threads"}, "project": {"--project"}, "json": {"--json"}},
    prune_budgets: {"weights": {"--weights"}, "data": {"--data"}, "imgsz": {"--imgsz", "--img", "--img-size"}, "factors": {"--factors"},
                    "percent": {"--percent"}, "importance": {"--importance"}, "round": {"--round"},
                    "threads": {"--threads"}, "repeats": {"--repeats"}, "out": {"--out"}, "project": {"--project"}},
    prune_sensitivity: {"weights": {"--weights"}, "data": {"--data"}, "percent": {"--percent"},
                        "imgsz": {"--imgsz", "--img", "--img-size"}, "batch_size": {"--batch-size"}, "mode": {"--mode"}, "seed": {"--seed"},
                        "workers": {"--workers"}, "importance": {"--importance"}, "round": {"--round"},
                        "out": {"--out"}},
    slimming: {"data": {"--data"}, "weights": {"--weights"}, "imgsz": {"--imgsz", "--img", "--img-size"}, "epochs": {"--epochs"},
               "ft_epochs": {"--ft-epochs"}, "batch_size": {"--batch-size"}, "workers": {"--workers"},
               "sparsity_rate": {"--sparsity-rate"}, "sparsity_target": {"--sparsity-target"},
               "ft_hyp": {"--ft-hyp"}, "mode": {"--mode"}, "percents": {"--percents"}, "round": {"--round"},
               "importance": {"--importance"}, "sparsity_importance": {"--sparsity-importance"},
               "bn_recal_images": {"--bn-recal-images"}, "baselines": {"--baselines"}, "threads": {"--threads"},
               "repeats": {"--repeats"}, "rounds": {"--rounds"}, "max_map_drop": {"--max-map-drop"},
               "project": {"--project"}, "name": {"--name"}, "out": {"--out"}},
}
# What each benchmark needs before its defaults parse (a required flag).
REQUIRED = {compare: ["--weights", "a.pt"], prune_budgets: ["--weights", "a.pt"]}
# A value each flag accepts (every other flag keeps its default); switches are given bare.
VALUES = {"weights": "w.pt", "imgsz": "64", "batch_size": "2", "warmup": "0", "repeats": "3", "device": "0",
          "data": "d.yaml", "threads": "2", "json": "out.json", "labels": "x", "workers": "0",
          "cfg": "models/yolov5n.yaml", "epochs": "2", "optimizer": "SGD", "sparsity_rate": "0.02", "percent": "0.2",
          "tol": "0.001", "latency_imgsz": "0", "project": "runs/x", "factors": "0.5", "importance": "taylor",
          "round": "4", "out": "runs/y", "mode": "shortcut", "seed": "3", "ft_epochs": "2", "sparsity_target": "0.5",
          "ft_hyp": "h.yaml", "percents": "0.3", "sparsity_importance": "gamma", "bn_recal_images": "8",
          "baselines": "none", "rounds": "2", "max_map_drop": "0.05", "name": "n"}
COMPANIONS = {"int8": ["--onnx"]}  # flags a flag needs beside it
MODULES = list(SPELLINGS)


def _options_class(module) -> type:  # noqa: ANN001
    return type(module.parse_opt(REQUIRED.get(module, [])))


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_flag_and_alias_is_kept(module) -> None:  # noqa: ANN001
    cls = _options_class(module)
    parser = build_parser(cls, "x")
    spellings = {a.dest: set(a.option_strings) for a in parser._actions if a.dest != "help"}
    assert spellings == SPELLINGS[module]
    assert {f.name for f in fields(cls)} == set(spellings)  # every field is a flag
    base = module.parse_opt(REQUIRED.get(module, []))
    for name, flags in SPELLINGS[module].items():
        switch = isinstance(getattr(base, name), bool)
        extra = COMPANIONS.get(name, [])
        for flag in flags:
            required = REQUIRED.get(module, [])
            got = module.parse_opt([*required, *extra, flag, *([] if switch else [VALUES[name]])])
            want = not getattr(base, name) if switch else vars(parser.parse_args([*required, flag, VALUES[name]]))[name]
            assert getattr(got, name) == want != getattr(base, name), (flag, getattr(got, name))
            changed = [f.name for f in fields(cls) if getattr(got, f.name) != getattr(base, f.name)]
            assert len(changed) == 1 + len(extra) and name in changed, (flag, changed)


@pytest.mark.parametrize("module", [m for m in MODULES if m not in REQUIRED], ids=lambda m: m.__name__)
def test_the_parsers_defaults_are_the_dataclasss(module) -> None:  # noqa: ANN001
    cls = _options_class(module)
    assert module.parse_opt([]) == cls()
    check_options(cls())  # the defaults pass their own checks


@pytest.mark.parametrize(("module", "argv", "message"), [
    (latency, ["--repeats", "0"], "--repeats must be >= 1, got 0"),
    (latency, ["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (latency, ["--batch-size", "1", "0"], "--batch-size must be >= 1, got [1, 0]"),
    (latency, ["--img", "0"], "--imgsz must be >= 1, got [0]"),
    (latency, ["--threads", "-1"], "--threads must be >= 0, got -1"),
    (latency, ["--int8"], "--int8 quantizes the ONNX export: add --onnx"),
    (compare, [], "the following arguments are required: --weights"),
    (compare, ["--weights", "a.pt", "b.pt", "--labels", "x"], "--labels: 1 labels for 2 --weights"),
    (compare, ["--weights", "a.pt", "--repeats", "0"], "--repeats must be >= 1, got 0"),
    (compare, ["--weights", "a.pt", "--workers", "-1"], "--workers must be >= 0, got -1"),
    (backbones, ["--cfg", "models/nope.yaml"], "--cfg names no such config: models/nope.yaml"),
    (backbones, ["--percent", "1"], "--percent must be in [0, 1), got 1.0"),
    (backbones, ["--sparsity_rate", "0"], "--sparsity_rate must be > 0, got 0.0"),
    (backbones, ["--latency-imgsz", "-1"], "--latency-imgsz must be >= 0, got [-1]"),
    (backbones, ["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (prune_budgets, [], "the following arguments are required: --weights"),
    (prune_budgets, ["--weights", "a.pt", "--factors", "0.5", "0"],
     "--factors must be in (0, 1], got [0.5, 0.0]"),
    (prune_budgets, ["--weights", "a.pt", "--percent", "0"], "--percent must be in (0, 1), got 0.0"),
    (prune_budgets, ["--weights", "a.pt", "--repeats", "0"], "--repeats must be >= 1, got 0"),
    (prune_sensitivity, ["--percent", "0.1", "1.5"], "--percent must be in [0, 1), got [0.1, 1.5]"),
    (prune_sensitivity, ["--round", "0"], "--round must be >= 1, got 0"),
    (slimming, ["--img", "16"], "--imgsz must be >= 32, got 16"),
    (slimming, ["--sparsity-rate", "0"], "--sparsity-rate must be > 0 (or 'auto'), got 0.0"),
    (slimming, ["--sparsity-target", "1"], "--sparsity-target must be in [0, 1), got 1.0"),
    (slimming, ["--percents", "0.5", "1"], "--percents must be in (0, 1), got [0.5, 1.0]"),
    (slimming, ["--rounds", "0"], "--rounds must be >= 1, got 0"),
])
def test_a_value_out_of_range_exits_2_naming_the_flag(module, argv: list[str], message: str,  # noqa: ANN001
                                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        module.parse_opt(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage:") and message in err.splitlines()[-1]


def test_a_bad_choice_or_number_is_argparses_usage_error(capsys: pytest.CaptureFixture) -> None:
    for module, argv in ((slimming, ["--sparsity-rate", "fast"]), (prune_budgets, ["--importance", "l2"]),
                         (prune_sensitivity, ["--importance", "gamma", "l2"])):
        with pytest.raises(SystemExit) as e:
            module.parse_opt(argv)
        assert e.value.code == 2 and "argument" in capsys.readouterr().err
    assert slimming.parse_opt(["--sparsity-rate", "AUTO"]).sparsity_rate == "auto"
    assert slimming.parse_opt(["--sparsity-rate", "0.01"]).sparsity_rate == 0.01


def test_options_built_in_python_are_checked_by_the_library() -> None:
    from engine.benchmark import LatencyOptions, run
    from engine.compare import CompareOptions, compare_models
    from utils.cli import FlagError

    with pytest.raises(FlagError, match=r"--int8 quantizes the ONNX export"):
        run(LatencyOptions(int8=True))
    with pytest.raises(FlagError, match=r"--repeats must be >= 1"):
        compare_models(CompareOptions(weights=["a.pt"], repeats=0))
    with pytest.raises(FlagError, match=r"^--weights is required: checkpoints to compare"):
        compare_models(CompareOptions())  # the default stands for "not given"


@pytest.mark.parametrize("module", list(REQUIRED), ids=lambda m: m.__name__)
def test_a_required_flag_shows_in_the_usage_line_and_the_bounds_hold(module) -> None:  # noqa: ANN001
    usage = build_parser(_options_class(module), "x").format_usage()
    assert " --weights WEIGHTS" in usage and "[--weights" not in usage
    with pytest.raises(ValueError, match=r"^--weights is required"):
        check_options(_options_class(module)())


def test_range_ends_are_open_or_closed_as_declared(capsys: pytest.CaptureFixture) -> None:
    assert prune_budgets.parse_opt(["--weights", "a.pt", "--factors", "1"]).factors == [1.0]  # (0, 1]
    for module, argv in ((slimming, ["--percents", "0"]), (backbones, ["--sparsity_rate", "0"]),
                         (prune_budgets, ["--weights", "a.pt", "--factors", "0"]),
                         (prune_budgets, ["--weights", "a.pt", "--percent", "1"])):
        with pytest.raises(SystemExit):
            module.parse_opt(argv)
        assert f"{argv[-2]} must be" in capsys.readouterr().err
    assert prune_sensitivity.parse_opt(["--percent", "0"]).percent == [0.0]  # [0, 1)
