"""sweep.py: config errors before anything runs, the stage graph, resuming, failures kept in the table, the Pareto
front, tables and plots, stages side by side on device slots; with a fake stage launcher (the real stages run in
test_sweep_backends.py)."""

from __future__ import annotations

import csv
import json
import re
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

import sweep
import train
from engine.sweep import load_config, measure, pareto_front, plan_stages, run_sweep
from engine.sweep.plots import plot_tradeoff
from engine.sweep.executors import LocalExecutor, SubprocessLauncher
from engine.sweep.runner import SweepState, error_from_log
from engine.sweep.table import build_rows, format_markdown
from engine.sweep.stages import Stage
from models.yolo import Model
from utils.cli import run_script
from utils.checkpoint import atomic_save, make_checkpoint


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """One PyTorch thread here and in the stages: on a loaded 2-core machine two threads spin against each other and
    run tiny models up to 100x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)


# -- config -----------------------------------------------------------------------------------------------------------


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to start a stage fails the test."""
    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError(f"a stage was started: {a}")

    monkeypatch.setattr("engine.command.subprocess.Popen", refuse)


def test_unknown_key_is_an_error_before_anything_runs(tmp_path: Path, no_subprocess: None) -> None:
    f = _write(tmp_path / "bad.yaml", {"sparsity_rate": [0.01], "prune_ratios": [0.3]})
    with pytest.raises(ValueError, match=re.escape(f"{f}: unknown key 'sparsity_rate' (did you mean "
                                                   "'sparsity_rates'?)")):
        sweep.main(["--config", str(f), "--project", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", ["sparsity_rates", "prune_ratios"])
def test_empty_grid_is_an_error_before_anything_runs(tmp_path: Path, no_subprocess: None, key: str) -> None:
    f = _write(tmp_path / "empty.yaml", {key: []})
    with pytest.raises(ValueError, match=re.escape(f"{f}: '{key}' is empty")):
        sweep.main(["--config", str(f), "--project", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("cfg, message", [
    ({"imgsz": "big"}, "'imgsz' must be an integer, got 'big'"),
    ({"prune_ratios": [0.3, 1.0]}, "'prune_ratios' must be in [0, 1), got [0.3, 1.0]"),
    ({"sparsity_rates": [0.01, 0.01]}, "'sparsity_rates' lists a value twice"),
    ({"mode": "fast"}, "'mode' must be one of normal, shortcut"),
    ({"extra": {"train": ["--cos-lr"]}}, "unknown stage kind 'train' under 'extra'"),
    ({"extra": {"prune": "--project elsewhere"}}, "'extra.prune' sets --project"),
])
def test_bad_values_name_file_and_key(tmp_path: Path, cfg: dict, message: str) -> None:
    f = _write(tmp_path / "bad.yaml", cfg)
    with pytest.raises(ValueError, match=re.escape(f"{f}: ") + ".*" + re.escape(message)):
        load_config(f)


def test_flag_errors_name_the_flag_and_a_list_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("--jobs: 'jobs' must be >= 1, got 0")):
        load_config(None, {"jobs": 0})
    f = tmp_path / "list.yaml"
    f.write_text("- 0.01\n- 0.03\n")
    with pytest.raises(ValueError, match=re.escape(f"{f}: a sweep config is a mapping")):
        load_config(f)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_flags_override_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.yaml", {"imgsz": 320, "sparsity_rates": [0.01], "device": 0,
                                     "extra": {"sparsity": "--noval", "finetune": ["--noval"]}})
    a, overrides = sweep.parse_opt(["--config", str(f), "--imgsz", "96", "--sparsity-rates", "0.02", "0.04",
                                    "--extra", "finetune=--cos-lr --noval"])
    cfg = load_config(a.config, overrides)
    assert cfg.imgsz == 96 and cfg.sparsity_rates == [0.02, 0.04]
    assert cfg.device == "0"  # YAML reads 0 as an int
    assert cfg.extra == {"sparsity": ["--noval"], "finetune": ["--cos-lr", "--noval"]}
    assert cfg.prune_ratios == [0.2, 0.3] and cfg.batch_size == 16  # untouched defaults


# -- the stage graph --------------------------------------------------------------------------------------------------


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_plan_for_two_rates_and_two_ratios(tmp_path: Path) -> None:
    cfg = load_config(None, {"sparsity_rates": [0.01, 0.03], "prune_ratios": [0.2, 0.3], "imgsz": 96,
                             "sparsity_epochs": 2, "finetune_epochs": 3})
    stages = plan_stages(cfg, tmp_path)
    kinds = [s.kind for s in stages]
    assert len(stages) == 11
    assert (kinds.count("base"), kinds.count("sparsity"), kinds.count("prune"), kinds.count("finetune")) == (1, 2, 4, 4)
    by = {s.name: s for s in stages}
    assert len({s.run_dir for s in stages}) == 11
    assert by["base"].script == "val.py" and by["base"].model == "yolov5n.pt"  # base_epochs 0: the weights
    for rate in (0.01, 0.03):
        sp = by[f"sparsity_s{rate:g}"]
        assert sp.deps == ["base"] and sp.script == "train.py"
        assert _flag(sp.args, "--sparsity_rate") == f"{rate:g}" and "--bn_sparsity" in sp.args
        assert _flag(sp.args, "--epochs") == "2" and _flag(sp.args, "--weights") == "yolov5n.pt"
        for ratio in (0.2, 0.3):
            pr, ft = by[f"prune_s{rate:g}_p{ratio:g}"], by[f"finetune_s{rate:g}_p{ratio:g}"]
            assert pr.deps == [sp.name] and ft.deps == [pr.name]
            assert _flag(pr.args, "--weights") == str(sp.run_dir / "weights" / "best.pt") == sp.model
            assert _flag(pr.args, "--percent") == f"{ratio:g}"
            assert _flag(ft.args, "--weights") == str(pr.run_dir / "pruned_model.pt") == pr.model
            assert "--ft_pruned_model" in ft.args and _flag(ft.args, "--epochs") == "3"
            assert _flag(ft.args, "--hyp").endswith("hyp.finetune_prune.yaml")
    for s in stages:
        assert _flag(s.args, "--project") == str(tmp_path.resolve() / s.kind) and _flag(s.args, "--name") == s.name
        assert "--exist-ok" in s.args and _flag(s.args, "--imgsz") == "96"
        assert s.run_dir == tmp_path.resolve() / s.kind / s.name
        assert all(stages.index(by[d]) < stages.index(s) for d in s.deps)  # run order respects dependencies
    trained = plan_stages(load_config(None, {"base_epochs": 4}), tmp_path)[0]
    assert trained.script == "train.py" and _flag(trained.args, "--epochs") == "4"
    assert trained.model == str(trained.run_dir / "weights" / "best.pt")


def test_interrupted_training_resumes_from_last_pt(tmp_path: Path) -> None:
    sp = plan_stages(load_config(None, {"sparsity_rates": [0.02]}), tmp_path)[1]
    assert "--resume" not in sp.argv()
    torch.save({"optimizer": {"state": {}}, "epoch": 0, "train_args": {"epochs": 3}}, _mk(sp.run_dir / "weights" /
                                                                                          "last.pt"))
    argv = sp.argv()
    # --resume alone: the run's sparsity settings come from its checkpoint, and train.py refuses flags beside it
    assert argv[2:] == ["--resume", str(sp.run_dir / "weights" / "last.pt")]
    train.parse_opt(argv[2:])
    torch.save({"optimizer": None, "epoch": 2, "train_args": {"epochs": 3}}, sp.run_dir / "weights" / "last.pt")
    assert "--resume" not in sp.argv()  # a finished run is not resumed


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# -- running with a fake launcher --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real (untrained) checkpoints: a 'full' model and a narrower 'pruned' one."""
    out = tmp_path_factory.mktemp("ckpt")
    cfg = yaml.safe_load(Path("models/yolov5n.yaml").read_text())
    files = {}
    for name, width in (("full", 0.25), ("pruned", 0.125)):
        atomic_save(make_checkpoint(Model({**cfg, "width_multiple": width})), out / f"{name}.pt")
        files[name] = out / f"{name}.pt"
    return files


class FakeLauncher:
    """Writes the outputs each script would write, with made-up metrics; optionally fails or interrupts a stage."""

    def __init__(self, ckpts: dict[str, Path], fail: str = "", interrupt_at: int = 0, delay: float = 0.0,
                 torn: str = "") -> None:
        self.ckpts, self.fail, self.interrupt_at, self.delay, self.torn = ckpts, fail, interrupt_at, delay, torn
        self.calls: list[str] = []
        self.seen_rows: dict[str, list[dict]] = {}
        self.lock = threading.Lock()
        self.active = self.max_active = 0
        self.placed: dict[str, tuple[str | None, dict, list[str]]] = {}  # device, env and command of each stage
        self.busy: set[str] = set()  # GPUs with a stage on them now

    def __call__(self, stage: Stage, log: Path) -> int:
        with self.lock:
            self.calls.append(stage.name)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            n = len(self.calls)
            self.placed[stage.name] = (stage.device, dict(stage.env), stage.argv())
            if stage.device is not None and stage.device.isdigit():  # a GPU slot (cpu slots share one name)
                assert stage.device not in self.busy, f"two stages at once on device {stage.device}"
                self.busy.add(stage.device)
        try:
            table = stage.run_dir.parents[1] / "results.csv"
            self.seen_rows[stage.name] = list(csv.DictReader(table.open())) if table.is_file() else []
            if n == self.interrupt_at:
                raise KeyboardInterrupt
            time.sleep(self.delay)
            log.parent.mkdir(parents=True, exist_ok=True)
            if stage.name == self.fail:
                log.write_text("Pruning...\nERROR: --percent 0.3 is above the safe maximum 0.21\n")
                return 2
            d = stage.run_dir
            score = {"base": 0.30, "sparsity": 0.25, "prune": 0.10, "finetune": 0.20}[stage.kind]
            score += sum(map(ord, stage.name)) % 7 / 1000  # rows differ a little
            metrics = {"precision": 0.5, "recall": 0.4, "mAP50": score + 0.2, "mAP50_95": score}
            if stage.script == "val.py":
                _json(d / "results.json", metrics)
            elif stage.script == "prune.py":
                _copy(self.ckpts["pruned"], d / "pruned_model.pt")
                if stage.name == self.torn:  # as prune.py writes results.json: in place, readable half-written
                    _mk(d / "results.json").write_text("")
                    time.sleep(1.0)
                _json(d / "results.json", {"threshold": 0.1 + stage.ratio / 10, "pruned": metrics})
            else:
                _copy(self.ckpts["pruned" if stage.kind == "finetune" else "full"], d / "weights" / "best.pt")
                _json(d / "results.json", {**metrics, "epochs": 2, "train_seconds": 12.5})
            return 0
        finally:
            with self.lock:
                self.active -= 1
                self.busy.discard(stage.device)


def _json(path: Path, obj: dict) -> None:
    _mk(path).write_text(json.dumps(obj))


def _copy(src: Path, dst: Path) -> None:
    _mk(dst).write_bytes(src.read_bytes())


def _cfg(tmp_path: Path, checkpoints: dict[str, Path], **kw) -> object:  # noqa: ANN003
    values = {"weights": str(checkpoints["full"]), "sparsity_rates": [0.01], "prune_ratios": [0.2, 0.3],
              "imgsz": 64, "project": str(tmp_path), "name": "sw", "latency_repeats": 1, "latency_warmup": 0, **kw}
    return load_config(None, values)


def _rows(out: Path) -> dict[str, dict]:
    return {r["exp_name"]: r for r in csv.DictReader((out / "results.csv").open())}


@pytest.mark.slow
def test_resume_skips_finished_stages(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    cfg = _cfg(tmp_path, checkpoints)
    fake = FakeLauncher(checkpoints, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, launcher=fake)
    out = tmp_path / "sw"
    rows = _rows(out)
    assert fake.calls == ["base", "sparsity_s0.01", "prune_s0.01_p0.2"]
    assert rows["base"]["status"] == rows["sparsity_s0.01"]["status"] == "done"
    assert rows["prune_s0.01_p0.2"]["status"] == "interrupted"
    assert float(rows["sparsity_s0.01"]["mAP50_95"]) > 0 and int(rows["base"]["params"]) > 0

    fake = FakeLauncher(checkpoints)
    res = run_sweep(cfg, launcher=fake)  # resume: only what is not done
    assert fake.calls == ["prune_s0.01_p0.2", "finetune_s0.01_p0.2", "prune_s0.01_p0.3", "finetune_s0.01_p0.3"]
    assert [r["status"] for r in res["rows"]] == ["done"] * 6 and not res["failed"]

    fake = FakeLauncher(checkpoints)
    run_sweep(cfg, launcher=fake)
    assert fake.calls == []  # everything was done
    (out / "finetune" / "finetune_s0.01_p0.3" / "results.json").unlink()
    run_sweep(cfg, launcher=fake)
    assert fake.calls == ["finetune_s0.01_p0.3"]


def test_failed_stage_is_recorded_and_finished_rows_survive(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    fake = FakeLauncher(checkpoints, fail="prune_s0.01_p0.3")
    res = run_sweep(_cfg(tmp_path, checkpoints), launcher=fake)
    out = res["dir"]
    assert "finetune_s0.01_p0.3" not in fake.calls  # its input never came
    assert res["failed"] == ["prune_s0.01_p0.3", "finetune_s0.01_p0.3"]
    rows = _rows(out)
    assert rows["prune_s0.01_p0.3"]["status"] == "failed"
    assert rows["prune_s0.01_p0.3"]["error"] == "exit code 2: ERROR: --percent 0.3 is above the safe maximum 0.21"
    assert rows["finetune_s0.01_p0.3"]["status"] == "skipped"
    assert rows["finetune_s0.01_p0.3"]["error"] == "not run: prune_s0.01_p0.3 failed"
    for name in ("base", "sparsity_s0.01", "prune_s0.01_p0.2", "finetune_s0.01_p0.2"):
        assert rows[name]["status"] == "done" and float(rows[name]["latency_ms"]) > 0
    # the table was rewritten after every stage: when the last stage started, the earlier ones were in it as done
    seen = {r["exp_name"]: r["status"] for r in fake.seen_rows["prune_s0.01_p0.3"]}
    assert seen["finetune_s0.01_p0.2"] == seen["prune_s0.01_p0.2"] == "done"
    md = (out / "results.md").read_text()
    assert "Stages that did not finish" in md and "safe maximum 0.21" in md


def test_tables_and_plots(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    res = run_sweep(_cfg(tmp_path, checkpoints), launcher=FakeLauncher(checkpoints))
    out = res["dir"]
    for f in ("results.csv", "results.md", "map_vs_latency.png", "map_vs_params.png", "gamma_hist_s0.01.png",
              "sweep.yaml", "state.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert sorted(p.name for p in res["files"] if p.suffix == ".png") == [
        "gamma_hist_s0.01.png", "map_vs_latency.png", "map_vs_params.png"]
    assert yaml.safe_load((out / "sweep.yaml").read_text())["prune_ratios"] == [0.2, 0.3]  # the settings, saved
    rows = _rows(out)
    assert list(rows) == ["base", "sparsity_s0.01", "prune_s0.01_p0.2", "finetune_s0.01_p0.2", "prune_s0.01_p0.3",
                          "finetune_s0.01_p0.3"]
    assert float(rows["base"]["speedup"]) == pytest.approx(1.0)
    assert int(rows["prune_s0.01_p0.2"]["params"]) < int(rows["base"]["params"])
    assert float(rows["finetune_s0.01_p0.3"]["gamma_threshold"]) == pytest.approx(0.13)  # from its prune stage
    assert rows["finetune_s0.01_p0.2"]["epochs"] == "2" and float(rows["finetune_s0.01_p0.2"]["train_seconds"]) == 12.5
    assert rows["prune_s0.01_p0.2"]["sparsity_rate"] == "0.01" and rows["prune_s0.01_p0.2"]["prune_ratio"] == "0.2"
    header = (out / "results.md").read_text().splitlines()
    head = next(ln for ln in header if ln.startswith("| exp_name"))
    for col in ("P", "R", "mAP50", "mAP50-95", "sparsity rate", "prune ratio", "gamma threshold", "parameters",
                "model size (MB)", "GFLOPs (640)", "CPU latency (ms)", "speed-up", "training time (s)", "epochs"):
        assert f"| {col} |" in head, col
    assert sum(ln.startswith("| ") and not ln.startswith("| ---") for ln in header) == 1 + 6  # header + a row each


@pytest.mark.slow
def test_changed_settings_refuse_to_resume_but_the_grid_may_grow(tmp_path: Path, checkpoints: dict[str, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    timed: list[int] = []
    real = measure.interleaved_latency

    def spy(weights, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        timed.append(len(weights))
        return real(weights, *a, **k)

    monkeypatch.setattr(measure, "interleaved_latency", spy)
    run_sweep(_cfg(tmp_path, checkpoints, prune_ratios=[0.2]), launcher=FakeLauncher(checkpoints))
    assert timed == [4]  # all four models in one session
    with pytest.raises(ValueError, match=r"other settings \(sparsity_epochs: 10 -> 3\).*another --name"):
        run_sweep(_cfg(tmp_path, checkpoints, prune_ratios=[0.2], sparsity_epochs=3), launcher=FakeLauncher(checkpoints))
    fake = FakeLauncher(checkpoints)
    run_sweep(_cfg(tmp_path, checkpoints, prune_ratios=[0.2, 0.3]), launcher=fake)
    assert fake.calls == ["prune_s0.01_p0.3", "finetune_s0.01_p0.3"]
    assert timed == [4, 6]  # new models: every model timed again, together
    run_sweep(_cfg(tmp_path, checkpoints, prune_ratios=[0.2, 0.3]), launcher=fake)
    assert timed == [4, 6]  # nothing changed: cached


def test_latency_times_every_model_in_one_interleaved_session(checkpoints: dict[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's latency goes through engine.benchmark's one timing loop: all models in the same rounds."""
    from engine import benchmark

    sessions: list[tuple[int, int, int, int]] = []
    real = benchmark.time_interleaved

    def spy(calls, repeats, rounds, warmup):  # noqa: ANN001, ANN202
        sessions.append((len(calls), repeats, rounds, torch.get_num_threads()))
        return real(calls, repeats, rounds, warmup)

    monkeypatch.setattr(benchmark, "time_interleaved", spy)
    files = [checkpoints["full"], checkpoints["pruned"], checkpoints["full"]]
    rows = measure.interleaved_latency(files, imgsz=64, warmup=0, repeats=4, threads=2, rounds=2)
    assert sessions == [(3, 4, 2, 2)]  # one session, the threads asked for while timing
    assert torch.get_num_threads() == 1  # and given back
    assert [sorted(r) for r in rows] == [["latency_iqr_ms", "latency_ms", "latency_threads"]] * 3
    assert all(r["latency_ms"] > 0 and r["latency_iqr_ms"] >= 0 and r["latency_threads"] == 2 for r in rows)


def test_resumed_training_rows_count_all_epochs_and_say_so(tmp_path: Path) -> None:
    stage = plan_stages(load_config(None, {"sparsity_rates": [0.01], "prune_ratios": [0.2]}), tmp_path)[3]
    assert stage.kind == "finetune"
    d = stage.run_dir
    files = {"weights/best.pt": "x", "results.json": json.dumps({"mAP50_95": 0.2, "epochs": 1,
                                                                      "train_seconds": 24.0}),
                  # epochs 0-1 of the first process, a stale row of an earlier attempt, then epoch 2 after resuming
                  "results.csv": "epoch,train/box_loss\n0,0.1\n1,0.09\n0,0.1\n2,0.08\n",
                  "opt.yaml": json.dumps({"resume": str(d / "weights" / "last.pt"), "epochs": 3})}
    for name, text in files.items():
        _mk(d / name).write_text(text)
    state = SweepState(tmp_path / "state.json")
    row = build_rows([stage], state, {}, tmp_path / "logs")[0]
    assert row["status"] == "done" and row["epochs"] == 3 and row["resumed"] is True
    md = format_markdown([row])
    assert "| 24 (resumed) | 3 |" in md


def test_jobs_run_stages_at_the_same_time_after_their_inputs(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    fake = FakeLauncher(checkpoints, delay=0.3)
    res = run_sweep(_cfg(tmp_path, checkpoints, jobs=2, prune_ratios=[0.2, 0.3, 0.4]), launcher=fake)
    assert fake.max_active == 2
    order = {n: i for i, n in enumerate(fake.calls)}
    for s in res["stages"]:
        assert all(order[d] < order[s.name] for d in s.deps)
    assert all(r["status"] == "done" for r in res["rows"])


def _started_after_inputs(stages: list[Stage], state: dict) -> None:
    """Every stage that ran started after each stage it depends on had ended (state.json's times)."""
    for s in stages:
        if "started" not in state[s.name]:
            continue
        for d in s.deps:
            assert state[s.name]["started"] >= state[d]["ended"], f"{s.name} started before {d} ended"


def test_device_slots_place_each_stage_on_a_free_device(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    """--devices 0,1: each stage on one slot's GPU (--device and CUDA_VISIBLE_DEVICES, counted among the GPUs this
    process sees), never two on a slot at once, always after its inputs; the table as with one slot."""
    fake = FakeLauncher(checkpoints, delay=0.2)
    cfg = _cfg(tmp_path, checkpoints, prune_ratios=[0.2, 0.3])
    res = run_sweep(cfg, executor=LocalExecutor(fake, ["0", "1"], environ={"CUDA_VISIBLE_DEVICES": "4,5"}))
    assert fake.max_active == 2 and sorted(fake.calls) == sorted(s.name for s in res["stages"])
    used = set()
    for name, (device, env, argv) in fake.placed.items():
        assert env == {"CUDA_VISIBLE_DEVICES": {"0": "4", "1": "5"}[device]}, name
        assert argv.count("--device") == 1 and _flag(argv, "--device") == device, argv
        used.add(device)
    assert used == {"0", "1"}
    state = json.loads((res["dir"] / "state.json").read_text())
    _started_after_inputs(res["stages"], state)
    assert {state[n]["where"] for n in fake.calls} == {"device 0", "device 1"}

    one = FakeLauncher(checkpoints)
    ref = run_sweep(_cfg(tmp_path, checkpoints, prune_ratios=[0.2, 0.3], name="one"), launcher=one)
    assert one.placed["base"][0] is None and "--device" not in one.placed["base"][2]  # one slot: stages as planned
    same = ("exp_name", "status", "mAP50_95", "params", "gamma_threshold", "epochs")
    assert [[r.get(k) for k in same] for r in ref["rows"]] == [[r.get(k) for k in same] for r in res["rows"]]


def test_a_failed_stage_on_one_slot_leaves_the_others_running(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    fake = FakeLauncher(checkpoints, fail="prune_s0.01_p0.2", delay=0.2)
    res = run_sweep(_cfg(tmp_path, checkpoints, prune_ratios=[0.2, 0.3]), executor=LocalExecutor(fake, ["cpu"] * 2))
    assert res["failed"] == ["prune_s0.01_p0.2", "finetune_s0.01_p0.2"]
    rows = _rows(res["dir"])
    assert rows["prune_s0.01_p0.3"]["status"] == rows["finetune_s0.01_p0.3"]["status"] == "done"
    assert "finetune_s0.01_p0.2" not in fake.calls and rows["finetune_s0.01_p0.2"]["status"] == "skipped"
    assert fake.placed["base"][1] == {} and _flag(fake.placed["base"][2], "--device") == "cpu"


def test_tables_never_read_the_files_of_a_running_stage(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    """The tables are rewritten whenever a stage starts or ends; a stage beside it may be writing its files then."""
    fake = FakeLauncher(checkpoints, torn="prune_s0.01_p0.2")
    res = run_sweep(_cfg(tmp_path, checkpoints, prune_ratios=[0.2, 0.3]), executor=LocalExecutor(fake, ["cpu"] * 2))
    assert not res["failed"]
    seen = {r["exp_name"]: r["status"] for r in fake.seen_rows["finetune_s0.01_p0.3"]}
    assert seen["prune_s0.01_p0.2"] == "running" and seen["prune_s0.01_p0.3"] == "done"


def test_gpu_slots_this_machine_lacks_are_refused_before_anything_runs(tmp_path: Path, no_subprocess: None,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match=re.escape("--devices 0,1: CUDA sees no GPU here; use --devices cpu,cpu")):
        sweep.main(["--devices", "0,1", "--project", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match=re.escape("GPU 2 is not among the 2 that CUDA_VISIBLE_DEVICES=4,5 shows")):
        LocalExecutor(FakeLauncher({}), ["0", "2"], environ={"CUDA_VISIBLE_DEVICES": "4,5"})


@pytest.mark.parametrize("flags, message", [
    (["--devices", "0,1", "--jobs", "2"], "--jobs: 'jobs' is 2 but 'devices' already makes one slot per listed device"),
    (["--devices", "0,1", "--device", "cpu"], "--devices: 'devices' and 'device' ('cpu') are both set"),
    (["--backend", "ray", "--devices", "0,1"], "--devices: 'devices' is for the local backend"),
    (["--backend", "ray", "--jobs", "4"], "--jobs: 'jobs' is for the local backend"),
    (["--ray-address", "auto"], "--ray-address: 'ray_address' is set but backend is 'local'"),
])
def test_placement_flags_that_contradict_are_refused(flags: list[str], message: str) -> None:
    a, overrides = sweep.parse_opt(flags)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(a.config, overrides)


def test_backend_ray_without_ray_is_one_error_line(tmp_path: Path, no_subprocess: None, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when the extra is not installed
    monkeypatch.delenv("YOLO_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_script(lambda: sweep.main(["--backend", "ray", "--project", str(tmp_path / "runs")]))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ERROR: --backend ray needs Ray, an optional extra: pip install -r "
                              "requirements-extra.txt")
    assert not (tmp_path / "runs").exists()
    assert sweep.main(["--backend", "ray", "--project", str(tmp_path / "runs"), "--dry-run"])["stages"]  # no Ray


def test_stopping_a_launcher_ends_its_running_stage(tmp_path: Path) -> None:
    launcher = SubprocessLauncher(live=False)
    code = "import time; print('run' + 'ning', flush=True); time.sleep(60)"  # the log's header holds the code
    stage = _ScriptStage("slow", "prune", "prune.py", [code], tmp_path / "run")
    log = tmp_path / "slow.log"
    with LocalExecutor(launcher, [None]) as ex:
        fut, _ = ex.submit(stage, log)
        deadline = time.time() + 30
        while "running" not in (log.read_text() if log.is_file() else "") and time.time() < deadline:
            time.sleep(0.05)
        t0 = time.time()
        ex.stop()
        assert fut.result(timeout=30) != 0 and time.time() - t0 < 10  # terminated, not waited for
    assert launcher(stage, log) == -2  # a stopped launcher starts nothing more


# -- pieces -----------------------------------------------------------------------------------------------------------


def test_pareto_front_on_a_hand_made_set() -> None:
    latency = [10.0, 8.0, 12.0, 5.0, 8.0, 20.0, None, 6.0, 5.0]
    mAP = [0.30, 0.28, 0.29, 0.20, 0.25, 0.31, 0.99, float("nan"), 0.20]
    # 3 (5 ms, 0.20) beats its duplicate 8; 1 beats 4 (same cost, better); 2 is beaten by 0; 6 and 7 lack a figure
    assert pareto_front(latency, mAP) == [3, 1, 0, 5]
    assert pareto_front([], []) == []
    with pytest.raises(ValueError, match="2 costs but 1 scores"):
        pareto_front([1.0, 2.0], [0.1])


def test_tradeoff_plot_marks_the_front() -> None:
    rows = [{"exp_name": n, "stage": k, "status": "done", "latency_ms": x, "mAP50_95": y}
            for n, k, x, y in (("base", "base", 10, 0.30), ("a", "prune", 6, 0.20), ("b", "finetune", 7, 0.18),
                               ("c", "finetune", 6.5, 0.26))]
    rows.append({"exp_name": "d", "stage": "prune", "status": "failed", "latency_ms": None, "mAP50_95": None})
    fig = plot_tradeoff(rows, "latency_ms", "latency")
    ax = fig.axes[0]
    front = ax.lines[0]
    assert list(front.get_xdata()) == [6, 6.5, 10] and list(front.get_ydata()) == [0.20, 0.26, 0.30]
    assert {t.get_text() for t in ax.texts} == {"base", "a", "c"}  # the front and the base are named
    assert "Pareto front" in [t.get_text() for t in ax.get_legend().get_texts()]


class _ScriptStage(Stage):
    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-c", self.args[0]]


def test_subprocess_launcher_logs_output_shows_progress_and_reports_the_exit_code(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    code = "import sys; print('working'); print('ERROR: --percent 0.9 is too high', file=sys.stderr); sys.exit(2)"
    stage = _ScriptStage("prune_x", "prune", "prune.py", [code], tmp_path / "run")
    log = tmp_path / "logs" / "prune_x.log"
    assert SubprocessLauncher(live=False)(stage, log) == 2
    text = log.read_text()
    assert "working" in text and "ERROR: --percent 0.9 is too high" in text
    shown = capsys.readouterr().out  # one progress line: the first line of output the parent read (one chunk or two)
    assert shown.startswith("sweep: prune_x  ") and "0:00 elapsed" in shown and len(shown.splitlines()) == 1
    assert error_from_log(log, 2) == "exit code 2: ERROR: --percent 0.9 is too high"
    crash = tmp_path / "crash.log"
    crash.write_text("Traceback (most recent call last):\n  File x\nIndexError: list index out of range\n")
    assert error_from_log(crash, 1) == "exit code 1: IndexError: list index out of range"
