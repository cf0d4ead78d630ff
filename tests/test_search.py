"""slim.py --search: the candidates for a speed budget, the choice among them, and a tiny search end to end (every
candidate as fast as the budget asks, the chosen model exported at its own input size, the refusal when none is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

import slim
from engine.export.common import decode_metadata, imgsz_text, normalize_imgsz
from engine.slim.search import Candidate, NoCandidate, choose, plan_candidates, search_sizes
from engine.slim.shapes import dominant_aspect, parse_size, rect_shape
from utils.paths import REPO_ROOT


def test_sizes_reach_below_the_size_that_meets_the_budget_alone() -> None:
    assert search_sizes(320, 1.5) == [320, 288, 256, 224]  # 320 / sqrt(1.5) = 261: one size below it as well
    assert search_sizes(640, 2.0) == [640, 608, 576, 544, 512, 480, 448, 416]
    assert search_sizes(320, 1.5, [256, 320, 256]) == [320, 256]


def test_candidates_slim_what_each_size_and_precision_leaves_of_the_budget() -> None:
    ms = {(320, "fp32"): 12.0, (288, "fp32"): 10.0, (256, "fp32"): 7.9, (224, "fp32"): 6.0,
          (320, "int8"): 13.0, (288, "int8"): 7.0, (256, "int8"): 5.5}
    cands = plan_candidates(1.5, 12.0, ms, 320)
    got = [(c.name, c.family) for c in cands]
    # fp32: 320 slims 1.5x, 288 slims 1.25x, 256 (1.52x alone) ends the list; int8 at 320 is slower than the
    # source (none), 288 alone is 1.71x and ends it.
    assert got == [("320px-fp32-slim1.50x", "slim"), ("288px-fp32-slim1.25x", "combination"), ("256px-fp32", "size"),
                   ("288px-int8", "combination")]
    for c in cands:  # what the unpruned model at that size and precision gives, times the slimming, is the budget
        assert 12.0 / ms[(c.imgsz, c.precision)] * c.slim == pytest.approx(1.5, rel=1e-3) or \
            (not c.slimmed and 12.0 / ms[(c.imgsz, c.precision)] >= 1.5)
    assert Candidate(320, "int8", 1.0, 320).family == "int8"


def test_rectangles_are_planned_apart_from_squares() -> None:
    """A rectangle is a size knob of its own: its list runs from the source's long side down like the squares',
    and a rectangle fast enough alone ends it without ending the squares'."""
    ms = {(320, "fp32"): 12.0, (288, "fp32"): 10.0, (256, "fp32"): 7.9, ((320, 256), "fp32"): 9.6,
          ((288, 224), "fp32"): 7.6, (320, "int8"): 9.0, (288, "int8"): 7.0, ((320, 256), "int8"): 6.5,
          ((288, 224), "int8"): 5.0}
    got = [(c.name, c.family, c.input_size, c.imgsz) for c in plan_candidates(1.5, 12.0, ms, 320)]
    assert got == [("320px-fp32-slim1.50x", "slim", 320, 320), ("288px-fp32-slim1.25x", "combination", 288, 288),
                   ("256px-fp32", "size", 256, 256),
                   ("320x256px-fp32-slim1.20x", "combination", (320, 256), 320),
                   ("288x224px-fp32", "size", (288, 224), 288),
                   ("320px-int8-slim1.12x", "combination", 320, 320), ("288px-int8", "combination", 288, 288),
                   ("320x256px-int8", "combination", (320, 256), 320)]
    assert Candidate(320, "fp32", 1.0, 320, (320, 256)).family == "size"  # the source's long side, fewer pixels


def _images(root: Path, sizes: list[tuple[int, int]]) -> Path:
    from PIL import Image

    d = root / "images" / "train"
    d.mkdir(parents=True)
    for i, wh in enumerate(sizes):
        Image.new("RGB", wh, (i * 20, 90, 160)).save(d / f"{i}.jpg")
    return d


def test_the_dominant_orientation_gives_one_rectangle_per_size(tmp_path: Path) -> None:
    """7 of 10 photos portrait (3:4 and 9:16, median 3:4): 320 -> 320x256 (240 rounded up to the stride), 256 ->
    256x192; half and half gives no rectangle; a landscape majority gives (short, long)."""
    aspect = dominant_aspect(str(_images(tmp_path / "a", [(60, 80)] * 5 + [(45, 80)] * 2 + [(80, 60)] * 3)))
    assert aspect == {"portrait": True, "ratio": pytest.approx(0.75), "share": pytest.approx(0.7)}
    assert [rect_shape(s, aspect) for s in (320, 288, 256)] == [(320, 256), (288, 224), (256, 192)]
    assert dominant_aspect(str(_images(tmp_path / "b", [(60, 80)] * 5 + [(80, 60)] * 5))) is None
    assert rect_shape(320, None) is None
    assert rect_shape(320, {"portrait": False, "ratio": 0.5625}) == (192, 320)
    assert rect_shape(320, {"portrait": True, "ratio": 0.95}) is None  # rounds up to the square: nothing gained
    assert [parse_size(imgsz_text(s)) for s in (320, (320, 256))] == [320, (320, 256)]


def test_sizes_measured_later_are_kept_relative_to_the_stored_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run begun before rectangles were tried resumes: the stored squares keep their figures, the rectangles are
    timed with the source alone and scaled to the source's first timing (a slower machine now changes no ratio)."""
    import engine.slim.search as search
    from engine.slim.options import SlimOptions
    from engine.stages import StageRunner

    old = {"source_ms": 10.0, "sizes": [320, 288], "int8": False, "ms": {"320|fp32": 10.0, "288|fp32": 8.0}}
    (tmp_path / "sizes.json").write_text(json.dumps(old))
    timed: list[list[str]] = []
    monkeypatch.setattr(search, "_export", lambda *a, **k: None)
    monkeypatch.setattr(search, "load_dataset_config", lambda data: {"train": "images/train"})
    monkeypatch.setattr(search, "dominant_aspect", lambda train: {"portrait": True, "ratio": 0.75, "share": 0.8})
    monkeypatch.setattr(search, "_time", lambda items, opt, repeats: timed.append([it.key for it in items]) or {
        "320|fp32": 20.0, "320x256|fp32": 16.0, "288x224|fp32": 12.0})  # everything twice as slow as before
    opt = SlimOptions(weights="w.pt", speedup=1.5, latency_backend="torch")
    got = search._measure_sizes(StageRunner(tmp_path, prefix="slim"), opt, tmp_path / "w.pt", {"speedup": 1.5})
    assert timed == [["320|fp32", "320x256|fp32", "288x224|fp32"]]  # the source and what was missing, nothing else
    assert got["ms"] == {"320|fp32": 10.0, "288|fp32": 8.0, "320x256|fp32": 8.0, "288x224|fp32": 6.0}
    assert json.loads((tmp_path / "sizes.json").read_text())["aspect"]["portrait"]
    assert search._measure_sizes(StageRunner(tmp_path, prefix="slim"), opt, tmp_path / "w.pt", {"speedup": 1.5}
                                 )["ms"] == got["ms"] and len(timed) == 1  # complete now: nothing timed again
    squares = search._measure_sizes(StageRunner(tmp_path, prefix="slim"), SlimOptions(
        weights="w.pt", speedup=1.5, latency_backend="torch", search_rect=False), tmp_path / "w.pt", {"speedup": 1.5})
    assert squares["ms"] == old["ms"]  # --no-search-rect: the squares alone


def _row(name: str, val: float, speedup: float, meets: bool, epochs: int = 30, kept: bool = True) -> dict:
    return {"name": name, "map50_95_val": val, "speedup": speedup, "meets_budget": meets, "epochs": epochs,
            "kept": kept}


def test_the_choice_is_the_most_accurate_finalist_that_meets_the_budget() -> None:
    rows = [_row("fast", 0.25, 1.9, True), _row("best-but-slow", 0.40, 1.45, False),
            _row("int8-broken", 0.38, 1.7, True, kept=False), _row("screened-only", 0.39, 1.6, True, epochs=0),
            _row("good", 0.30, 1.55, True)]
    assert choose(rows)["name"] == "good"
    with pytest.raises(NoCandidate, match=r"no fine-tuned candidate meets the budget as measured; the fastest, "
                                          r"fast, measured 1\.900x"):
        choose([dict(rows[0], meets_budget=False), rows[1]])


def test_a_speed_budget_searches_unless_told_off() -> None:
    from engine.slim.options import SlimOptions

    assert slim.parse_opt(["--weights", "w.pt", "--speedup", "1.5"]).searching
    assert slim.parse_opt(["--weights", "w.pt", "--target-latency", "8"]).searching
    assert slim.parse_opt(["--weights", "w.pt", "--speedup", "1.5", "--search"]).search == "on"
    assert not slim.parse_opt(["--weights", "w.pt", "--speedup", "1.5", "--search", "off", "--steps", "2"]).searching
    assert not slim.parse_opt(["--weights", "w.pt", "--target-gflops", "1"]).searching
    assert not SlimOptions(weights="w.pt", target_params=5).searching


def test_a_run_started_when_search_was_a_switch_resumes_under_the_spelling_that_means_the_same() -> None:
    from engine.slim.run import _stored_searching

    assert _stored_searching({"search": True, "speedup": 1.5})  # `--search` then: `--search` or the default now
    assert not _stored_searching({"search": False, "speedup": 1.5})  # slimming alone then: `--search off` now
    assert _stored_searching({"search": "auto", "speedup": 0, "target_latency": 8.0})
    assert not _stored_searching({"search": "auto", "speedup": 0, "target_latency": 0, "target_gflops": 1.0})
    assert not _stored_searching({"search": "off", "speedup": 1.5})


@pytest.mark.parametrize("args, message", [
    (["--target-gflops", "1", "--search"], "--search needs a speed budget"),
    (["--speedup", "1.5", "--search", "--search-sizes", "300"], "--search-sizes must be multiples of 32"),
    (["--speedup", "1.5", "--search", "--int8-guard", "2"], "--int8-guard must be in [0, 1)"),
    (["--speedup", "1.5", "--steps", "2", "--distill", "feature"],
     "--steps, --distill apply to slimming alone, but a speed budget searches every knob by default: add --search off"),
    (["--target-gflops", "1", "--search-epochs", "5"], "--search-epochs applies to the search only"),
    (["--speedup", "1.5", "--search", "off", "--int8-guard", "0.1"], "--int8-guard applies to the search only"),
    (["--speedup", "1.5", "--search", "maybe"], "invalid choice: 'maybe'"),
    (["--speedup", "1.5", "--search", "off", "--no-search-rect"], "--no-search-rect applies to the search only"),
])
def test_search_flag_errors(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        slim.parse_opt(["--weights", "w.pt", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_search_meets_its_budget_exports_the_chosen_size_and_refuses_when_nothing_is_fast_enough(
        tmp_path: Path, tiny_data: Path, yolov5n_pt: Path) -> None:
    """``--speedup 1.3`` (a speed budget searches by default) at 160 px, one epoch per finalist: a slimmed, a
    smaller-input and an INT8 candidate, and a landscape rectangle (10 of the 16 training photos are landscape), each
    timed at least about 1.3x faster than the source; search.json/md/png; the chosen model copied to
    chosen/ with its input size in the export's metadata, which val.py uses by default. Run again after its timings
    are made slower than the budget, the same command resumes every stage and refuses with one ERROR line."""
    cmd = [sys.executable, "slim.py", "--weights", str(yolov5n_pt), "--data", str(tiny_data), "--imgsz", "160",
           "--speedup", "1.3", "--search-epochs", "1", "--workers", "0", "--project", str(tmp_path),
           "--name", "s"]
    p = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    root = tmp_path / "s"
    result = json.loads((root / "search.json").read_text())
    rows = result["candidates"]
    assert {r["family"] for r in rows} >= {"slim", "size"} and any(r["precision"] == "int8" for r in rows)
    assert {tuple(r["imgsz"]) for r in rows if isinstance(r["imgsz"], list)} >= {(128, 160)}, rows  # (h, w)
    assert result["budget"]["speedup"] == 1.3
    for r in rows:
        assert r["screen_speedup"] >= 1.3 * 0.95, r  # timing noise allowed for; an unmet budget is ~1.0x
        assert {"name", "imgsz", "slimmed", "precision", "backend", "gflops", "ort_ms", "speedup", "epochs",
                "map50_95_val", "map50_95_test", "meets_budget", "chosen"} <= set(r)
    assert any(r["slimmed"] and r["gflops"] < result["source"]["gflops"] * 0.9 for r in rows)
    for fam in ("slim", "size"):  # the best-screened of each kind, and it alone, fine-tuned
        kind = [r for r in rows if r["family"] == fam and r["screen_meets"]]
        done = [r for r in kind if r["epochs"]]
        assert done == [max(kind, key=lambda r: r["map50_95_screen"])] and done[0]["epochs"] == 1, kind
        assert 0 <= done[0]["map50_95_val"] <= 1
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["meets_budget"] and chosen[0]["epochs"] == 1
    best = max(r["map50_95_val"] for r in rows if r["meets_budget"] and r["epochs"] and r["kept"])
    assert chosen[0]["map50_95_val"] == best
    deployed = Path(result["chosen"]["file"])
    assert deployed.parent == root / "chosen" and deployed.suffix == ".onnx"
    assert sorted(f.name for f in deployed.parent.iterdir()) == sorted([deployed.name,
                                                                       Path(result["chosen"]["pt"]).name])
    meta = decode_metadata({m.key: m.value for m in onnx.load(str(deployed)).metadata_props})
    assert meta["imgsz"] == list(normalize_imgsz(chosen[0]["imgsz"]))
    v = subprocess.run([sys.executable, "val.py", "--weights", str(deployed), "--data", str(tiny_data), "--workers",
                        "0", "--project", str(tmp_path), "--name", "v"], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=300)
    assert v.returncode == 0, v.stderr[-2000:]
    assert json.loads((tmp_path / "v" / "results.json").read_text())["imgsz"] == chosen[0]["imgsz"]
    report = json.loads((root / "report.json").read_text())  # slim.py's before/after report, for the chosen model
    fin = report["final"]
    assert report["label"] == "chosen" and fin["imgsz"] == chosen[0]["imgsz"] and fin["file"] == str(deployed)
    assert fin["map50_95_val"] == chosen[0]["map50_95_val"] and report["epochs"] == 1
    assert fin["ort_ms"] > 0 and fin["openvino_ms"] > 0 and report["source"]["torch_ms"] > 0
    assert (fin["torch_ms"] is None) == (chosen[0]["precision"] == "int8")  # PyTorch runs no INT8 model
    md = (root / "search.md").read_text()
    assert f"| {chosen[0]['name']} |" in md and "**chosen**" in md and "| source | - | 160 |" in md
    assert (root / "search.png").stat().st_size > 10_000 and p.stdout.splitlines()[-1] == f"Results saved to {root}"

    times = json.loads((root / "final_times.json").read_text())
    (root / "final_times.json").write_text(json.dumps({k: times["source"] for k in times}))  # every finalist 1.0x
    p = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 2, p.stdout[-3000:] + p.stderr[-2000:]
    assert "ft_" not in "".join(ln for ln in p.stdout.splitlines() if "$ python" in ln)  # nothing ran again
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1 and "no fine-tuned candidate meets the budget as measured" in errors[0], p.stderr
    assert not json.loads((root / "search.json").read_text()).get("chosen")
