"""engine.benchmark.time_interleaved, the one timing loop: it alternates the calls it compares round by round, so a
load that drifts reaches them all alike, and every latency path (measure_latency, measure_latencies, time_models,
benchmarks/latency.py) goes through it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import engine.benchmark as benchmark
from engine.backends import Backend
from engine.benchmark import (LatencyOptions, Timed, measure_latencies, measure_latency, time_interleaved,
                              time_models)
from models.yolo import Model


def _recorder(order: list[str], key: str):  # noqa: ANN202
    return lambda: order.append(key)


def test_calls_alternate_round_by_round() -> None:
    order: list[str] = []
    res = time_interleaved({"a": _recorder(order, "a"), "b": _recorder(order, "b")}, repeats=5, rounds=2, warmup=1)
    # warm-up of each, then per round each call in turn: one untimed run (the other evicted it from the caches) and
    # its share of the repeats, 3 in the first round and 2 in the second
    assert "".join(order) == "ab" + "aaaa" + "bbbb" + "aaa" + "bbb"
    assert res["a"]["repeats"] == res["b"]["repeats"] == 5 and res["a"]["rounds"] == 2


def test_one_call_alone_runs_warmup_then_its_repeats() -> None:
    order: list[str] = []
    res = time_interleaved({"a": _recorder(order, "a")}, repeats=4, rounds=10, warmup=2)
    assert order == ["a"] * 6 and res["a"]["repeats"] == 4 and res["a"]["rounds"] == 4  # rounds <= repeats
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        time_interleaved({"a": _recorder(order, "a")}, repeats=0)


def test_interleaving_hands_a_drifting_load_to_every_call_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two equal calls on a machine that gets slower with every run: timed one after the other the second comes out
    far slower; interleaved, their medians stay within a few percent."""
    clock = SimpleNamespace(now=0.0, runs=0)

    def equal_work() -> None:
        clock.runs += 1
        clock.now += 1e-3 * (1 + clock.runs / 50)  # 1 ms, plus 2% of it for every run so far

    monkeypatch.setattr(benchmark, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    one_after_other = time_interleaved({"a": equal_work, "b": equal_work}, repeats=50, rounds=1, warmup=0)
    interleaved = time_interleaved({"a": equal_work, "b": equal_work}, repeats=50, rounds=25, warmup=0)
    ratio = lambda r: r["b"]["median_ms"] / r["a"]["median_ms"]  # noqa: E731
    assert ratio(one_after_other) > 1.3
    assert ratio(interleaved) == pytest.approx(1.0, abs=0.03)


def test_figures_are_ordered_and_in_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=0.0, step=iter(range(1, 10 ** 6)))

    def work() -> None:
        clock.now += next(clock.step) * 1e-3  # 1, 2, 3, ... ms

    monkeypatch.setattr(benchmark, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    r = time_interleaved({"x": work}, repeats=5, rounds=1, warmup=0)["x"]
    assert r["min_ms"] == pytest.approx(1) and r["max_ms"] == pytest.approx(5) and r["median_ms"] == pytest.approx(3)
    assert r["min_ms"] <= r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]
    assert r["iqr_ms"] == pytest.approx(2) and r["mean_ms"] == pytest.approx(3)


class _Static(Backend):
    """A backend that takes only 64x64 inputs, as a static export does."""

    format = "onnx"

    def __init__(self) -> None:
        super().__init__(Path("static.onnx"), torch.device("cpu"))
        self.dynamic, self.imgsz = False, (64, 64)

    def forward(self, im: torch.Tensor) -> tuple[torch.Tensor, None]:
        return im, None


def test_cases_are_timed_together_and_a_case_that_cannot_run_gets_an_error_row(monkeypatch) -> None:  # noqa: ANN001
    seen = []
    real = benchmark.time_interleaved
    monkeypatch.setattr(benchmark, "time_interleaved", lambda calls, *a, **k: seen.append(list(calls)) or
                        real(calls, *a, **k))
    m = Model("yolov5n.yaml", nc=3)  # in training mode: timed in eval mode, handed back in training mode
    rows = measure_latencies([(m, 64, 1), (_Static(), 64, 2), (_Static(), 32, 1)], warmup=1, repeats=4)
    assert seen == [[0, 1]]  # one timing session for both runnable cases
    assert [(r["runtime"], r["imgsz"], r["batch_size"]) for r in rows] == [("pytorch", [64, 64], 1),
                                                                          ("onnxruntime", [64, 64], 2),
                                                                          ("onnxruntime", [32, 32], 1)]
    assert rows[0]["repeats"] == rows[1]["repeats"] == 4 and rows[1]["per_image_ms"] == rows[1]["median_ms"] / 2
    assert "takes only 64x64 inputs" in rows[2]["error"] and "median_ms" not in rows[2]
    assert m.training
    with pytest.raises(ValueError, match="takes only 64x64 inputs"):
        measure_latency(_Static(), 32)


def test_latency_benchmark_times_every_row_in_one_session(monkeypatch) -> None:  # noqa: ANN001
    """benchmarks/latency.py compares its rows, so it times them all interleaved."""
    seen = []
    real = benchmark.time_interleaved
    monkeypatch.setattr(benchmark, "time_interleaved", lambda calls, *a, **k: seen.append(len(calls)) or
                        real(calls, *a, **k))
    monkeypatch.setattr(benchmark, "load_backend", lambda w, device, threads=None: _Static())
    rows = benchmark.run(LatencyOptions(weights=["a.onnx", "b.onnx"], imgsz=[64, 32], batch_size=[1, 2], warmup=0,
                                        repeats=2))
    assert seen == [4]  # 2 models x 2 batch sizes at 64 px; the 32 px rows cannot run
    assert [("error" in r) for r in rows] == [False, False, True, True] * 2


def test_time_models_goes_through_the_same_loop(monkeypatch) -> None:  # noqa: ANN001
    seen = []
    real = benchmark.time_interleaved
    monkeypatch.setattr(benchmark, "time_interleaved", lambda calls, *a, **k: seen.append(sorted(calls)) or
                        real(calls, *a, **k))
    m = Model("yolov5n.yaml", nc=3).eval()
    res = time_models([Timed("x", m, 64), Timed("y", m, 64)], threads=1, repeats=3, rounds=3, runtimes=("torch",))
    assert seen == [[("x", "torch"), ("y", "torch")]]
    assert res["x"]["repeats"] == 3 and res["x"]["torch_ms"] > 0 and res["x"]["ort_ms"] is None


@pytest.mark.slow
def test_compare_validates_each_checkpoint_then_times_them_together(tmp_path: Path, yolov5n_pt: Path,
                                                                    coco128_dir: Path, monkeypatch,  # noqa: ANN001
                                                                    capsys: pytest.CaptureFixture) -> None:
    from benchmarks import compare
    from tests.test_val_detect import make_mini_dataset

    seen = []
    real = benchmark.time_interleaved
    monkeypatch.setattr(benchmark, "time_interleaved", lambda calls, *a, **k: seen.append(len(calls)) or
                        real(calls, *a, **k))
    data = make_mini_dataset(tmp_path / "mini", coco128_dir)
    rows = compare.main(["--weights", str(yolov5n_pt), str(yolov5n_pt), "--labels", "base", "same", "--data", str(data),
                         "--imgsz", "64", "--workers", "0", "--repeats", "4"])
    assert seen == [2]  # one session, both models
    assert [r["model"] for r in rows] == ["base", "same"] and rows[0]["mAP50_95"] == rows[1]["mAP50_95"]
    assert all(r["latency_ms"] > 0 and r["latency_iqr_ms"] >= 0 for r in rows)
    out = capsys.readouterr().out
    assert "| model | params | GFLOPs (640) | file (MB) | mAP50 | mAP50-95 | CPU latency bs1 (ms) |" in out
    assert out.count("x) |") == 1  # the second row's speed-up over the first


def test_short_names_tell_apart_files_of_the_same_name() -> None:
    from utils.paths import short_names

    assert short_names(["runs/a/weights/best.pt", "runs/b/weights/best.pt", "yolov5n.pt"]) == [
        "a/weights/best.pt", "b/weights/best.pt", "yolov5n.pt"]
    assert short_names(["x/best.pt", "x/best.pt", "y.onnx"]) == ["best.pt", "best.pt#2", "y.onnx"]  # named twice
    assert short_names(["w/last.pt", "w/best.pt"]) == ["last.pt", "best.pt"]


def test_latency_rows_of_two_runs_best_pt_keep_their_runs_apart(tmp_path: Path) -> None:
    """Two runs' best.pt with --onnx: four rows named by run (every row used to say best.pt or best.onnx, and the
    table could not be read)."""
    from utils.checkpoint import atomic_save, make_checkpoint

    files = []
    for run, cfg in (("small", "yolov5n.yaml"), ("wide", "yolov5s.yaml")):
        f = tmp_path / run / "weights" / "best.pt"
        f.parent.mkdir(parents=True)
        atomic_save(make_checkpoint(Model(cfg, nc=3).eval()), f)
        files.append(str(f))
    rows = benchmark.run(LatencyOptions(weights=files, onnx=True, imgsz=[64], batch_size=[1], warmup=1, repeats=3))
    assert [(r["model"], r["runtime"]) for r in rows] == [
        ("small/weights/best.pt", "pytorch"), ("small/weights/best.onnx", "onnxruntime"),
        ("wide/weights/best.pt", "pytorch"), ("wide/weights/best.onnx", "onnxruntime")]
    assert "wide/weights/best.onnx" in benchmark.format_latency_table(rows)
