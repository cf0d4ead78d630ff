"""detect.py and export.py declare their flags once, on DetectOptions / ExportOptions (utils/options.py): the generated
parsers keep every spelling and options objects render into command lines that parse back to equal objects. Their range
checks are among tests/test_options.py's cases for every script."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

import detect
import export
from engine.export.run import ExportOptions
from engine.detect.predictor import DetectOptions
from utils.options import build_parser, to_argv


def _spellings(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    return {a.dest: set(a.option_strings) for a in parser._actions if a.dest != "help"}


def test_detect_parser_has_every_flag_and_alias() -> None:
    s = _spellings(build_parser(DetectOptions, "detect.py"))
    assert s["imgsz"] == {"--imgsz", "--img", "--img-size"}
    assert set(s) == {f.name for f in fields(DetectOptions)}  # every field is a flag
    for flag in ("--imgsz", "--img", "--img-size"):
        assert detect.parse_opt([flag, "320"]).imgsz == 320
    assert detect.parse_opt(["--classes", "0", "2", "--conf-thres", "0.5", "--nosave"]) == \
        DetectOptions(classes=[0, 2], conf_thres=0.5, nosave=True)
    assert detect.parse_opt([]) == DetectOptions()  # the parser's defaults are the dataclass's


def test_export_parser_has_every_flag_and_alias() -> None:
    s = _spellings(build_parser(ExportOptions, "export.py"))
    assert s["imgsz"] == {"--imgsz", "--img", "--img-size"}
    # flags for everything but the library callers' fields
    assert set(s) == {f.name for f in fields(ExportOptions)} - {"int8_images", "int8_report", "workers", "output_dir"}
    for flag in ("--imgsz", "--img", "--img-size"):
        assert export.parse_opt([flag, "320", "256"]).imgsz == [320, 256]
    assert export.parse_opt(["--include", "onnx", "openvino", "--int8-method", "minmax"]) == \
        ExportOptions(include=["onnx", "openvino"], int8_method="minmax")
    assert export.parse_opt([]) == ExportOptions()
    choices = [a.choices for a in build_parser(ExportOptions, "e")._actions if a.dest == "int8_method"][0]
    assert tuple(choices) == ("percentile", "minmax", "entropy")


def test_project_that_is_a_file_is_refused(tmp_path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(SystemExit) as e:
        detect.parse_opt(["--project", str(f)])
    assert e.value.code == 2 and f"--project {f} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(("module", "options"), [
    (detect, DetectOptions(weights="w.onnx", source="0", imgsz=320, conf_thres=0.3, classes=[0, 2], save_txt=True,
                           hide_conf=True, name="-odd", vid_stride=2, device="cpu")),
    (export, ExportOptions(weights="w.pt", imgsz=[320, 256], include=["onnx", "openvino"], int8=True,
                           int8_method="entropy", opset=13, dynamic=True, data="d.yaml", batch_size=4)),
])
def test_to_argv_parses_back_to_equal_options(module, options) -> None:
    argv = to_argv(options)
    assert module.parse_opt(argv) == options
    assert module.parse_opt(to_argv(options, only_changed=False)) == options
