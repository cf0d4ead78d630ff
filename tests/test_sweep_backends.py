"""sweep.py running its stages for real (val.py, train.py, prune.py on 16 coco128 images at 64 px): one stage at a time,
two side by side on CPU slots (``--devices cpu,cpu``), and as Ray tasks on a local Ray instance (``--backend ray``).
However the stages ran, the same stages must finish or fail and the tables must hold the same rows; no stage may start
before the stages it needs have ended; a failing stage must leave the others running."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

import sweep
from engine.sweep.ray_executor import RayExecutor
from engine.sweep.stages import Stage

pytestmark = pytest.mark.slow  # every test here runs a real sweep

STAGES = ["base", "sparsity_s0.01", "prune_s0.01_p0.1", "finetune_s0.01_p0.1", "prune_s0.01_p0.95",
          "finetune_s0.01_p0.95"]
FAILED = ["prune_s0.01_p0.95", "finetune_s0.01_p0.95"]  # 0.95 is above the safe maximum: prune.py refuses it
# Table columns that must not depend on how the stages ran (timings, latency and paths do).
SAME = ("exp_name", "stage", "status", "sparsity_rate", "prune_ratio", "precision", "recall", "mAP50", "mAP50_95",
        "gamma_threshold", "gamma_lt_0_01", "params", "size_mb", "gflops", "epochs", "error")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path, yolov5n_pt: Path):  # noqa: ANN201
    """Runs the tiny sweep under a name with more flags; one rate, ratios 0.1 and 0.95, one epoch per training."""
    root = tmp_path_factory.mktemp("tiny_sweep")
    images = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:16]
    (root / "list.txt").write_text("\n".join(map(str, images)) + "\n")
    names = yaml.safe_load(Path("data/coco128.yaml").read_text())["names"]
    data = root / "tiny.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "list.txt", "val": "list.txt", "names": names}))

    def run(name: str, *flags: str) -> dict:
        return sweep.main(["--weights", str(yolov5n_pt), "--data", str(data), "--imgsz", "64", "--batch-size", "8",
                           "--sparsity-rates", "0.01", "--prune-ratios", "0.1", "0.95", "--sparsity-epochs", "1",
                           "--finetune-epochs", "1", "--workers", "0", "--project", str(root / "runs"),
                           "--name", name, "--latency-repeats", "2", "--latency-warmup", "1",
                           "--extra", "sparsity=--noplots", "--extra", "finetune=--noplots", *flags])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the sweep measures its models in this process (see conftest's one_torch_thread)
    with pytest.MonkeyPatch.context() as mp:  # the stages (subprocesses, Ray tasks) get these too
        mp.setenv("YOLO_CACHE_DIR", str(root / "cache"))
        mp.setenv("OMP_NUM_THREADS", "1")
        yield run
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sequential(tiny: Callable[..., dict]) -> dict:
    """The reference: one stage at a time."""
    return tiny("sequential")


def _table(res: dict) -> list[dict]:
    """results.csv's rows, the columns that do not depend on how the stages ran."""
    with open(res["dir"] / "results.csv") as f:
        return [{k: r[k] for k in SAME} for r in csv.DictReader(f)]


def _state(res: dict) -> dict:
    return json.loads((res["dir"] / "state.json").read_text())


def _check_order(res: dict) -> dict:
    """Each stage started after the stages it needs had ended, and after their output files were written."""
    state = _state(res)
    for s in res["stages"]:
        if "started" not in state[s.name]:  # skipped: never started
            continue
        for d in s.deps:
            assert state[s.name]["started"] >= state[d]["ended"], f"{s.name} started before {d} ended"
            dep = next(x for x in res["stages"] if x.name == d)
            for out in dep.outputs:
                assert state[s.name]["started"] >= out.stat().st_mtime, f"{s.name} started before {out} was written"
    return state


def test_tiny_real_sweep_end_to_end(sequential: dict) -> None:
    """val.py, train.py (sparsity, fine-tune) and prune.py for real; the prune above the safe maximum fails, its
    fine-tune is skipped, and every other row is complete."""
    res = sequential
    assert res["failed"] == FAILED, (res["dir"] / "results.md").read_text()
    rows = {r["exp_name"]: r for r in res["rows"]}
    assert list(rows) == STAGES
    assert rows["base"]["params"] == 1872157 and rows["base"]["mAP50_95"] > 0  # official yolov5n
    assert rows["prune_s0.01_p0.1"]["params"] < rows["base"]["params"]
    assert rows["finetune_s0.01_p0.1"]["params"] == rows["prune_s0.01_p0.1"]["params"]
    assert rows["finetune_s0.01_p0.1"]["epochs"] == 1 and rows["finetune_s0.01_p0.1"]["train_seconds"] > 0
    assert 0 < rows["prune_s0.01_p0.1"]["gamma_threshold"] < 2
    assert all(rows[n]["latency_ms"] > 0 for n in STAGES[:4])
    assert rows["prune_s0.01_p0.95"]["status"] == "failed"
    assert rows["prune_s0.01_p0.95"]["error"].startswith("exit code 2: ERROR: percent 0.95 is above the highest safe")
    assert rows["finetune_s0.01_p0.95"]["error"] == "not run: prune_s0.01_p0.95 failed"
    out = res["dir"]
    for f in ("results.csv", "results.md", "map_vs_latency.png", "map_vs_params.png", "gamma_hist_s0.01.png",
              "logs/sparsity_s0.01.log"):
        assert (out / f).is_file(), f
    assert "Starting training for 1 epochs" in (out / "logs" / "sparsity_s0.01.log").read_text()
    state = _check_order(res)
    assert all("where" not in state[n] for n in STAGES)  # one slot: the stages ran as planned
    runs = sorted((state[n]["started"], state[n]["ended"]) for n in STAGES if "started" in state[n])
    assert all(a[1] <= b[0] for a, b in zip(runs, runs[1:]))  # one at a time


def test_two_cpu_slots_give_the_same_tables(tiny: Callable[..., dict], sequential: dict) -> None:
    res = tiny("parallel", "--devices", "cpu,cpu")
    assert [s.name for s in res["stages"]] == STAGES and res["failed"] == FAILED
    assert _table(res) == _table(sequential)
    state = _check_order(res)
    ran = {n: (state[n]["started"], state[n]["ended"]) for n in STAGES if "started" in state[n]}
    assert {state[n]["where"] for n in ran} == {"device cpu"}
    # never more than two at once, and the two prunes did run side by side
    for t in {t for span in ran.values() for t in span}:
        assert sum(a <= t < b for a, b in ran.values()) <= 2
    (a0, a1), (b0, b1) = ran["prune_s0.01_p0.1"], ran["prune_s0.01_p0.95"]
    assert a0 < b1 and b0 < a1
    # the failure came while another stage ran, and that stage still finished
    failed_at = state["prune_s0.01_p0.95"]["ended"]
    survivors = [n for n, (a, b) in ran.items() if a < failed_at < b]
    assert survivors and all(state[n]["status"] == "done" for n in survivors)
    assert "--device cpu" in (res["dir"] / "logs" / "finetune_s0.01_p0.1.log").read_text()


@pytest.fixture(scope="module")
def local_ray():  # noqa: ANN201 - a generator fixture
    """A local Ray instance with two CPUs and no dashboard, shut down after this module's Ray tests."""
    import ray  # the optional extra (requirements-extra.txt); scripts/test.sh installs it

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_ray_tasks_give_the_same_tables(tiny: Callable[..., dict], sequential: dict, local_ray) -> None:  # noqa: ANN001
    """--backend ray: each stage a Ray task (one CPU each, no GPU here), results gathered into the same tables."""
    res = tiny("ray", "--backend", "ray")
    assert local_ray.is_initialized()  # a Ray instance the sweep did not start is left running
    assert [s.name for s in res["stages"]] == STAGES and res["failed"] == FAILED
    assert _table(res) == _table(sequential)
    state = _check_order(res)
    assert {state[n].get("where") for n in STAGES[:5]} == {"ray"}
    log = (res["dir"] / "logs" / "finetune_s0.01_p0.1.log").read_text()
    assert "# ray task on " in log and "--device cpu" in log and "Starting training for 1 epochs" in log


class _Sleeper(Stage):
    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-c", "import os, time; print('pid', os.getpid(), flush=True); time.sleep(120)"]


def test_stopping_ray_tasks_ends_their_commands(tmp_path: Path, local_ray) -> None:  # noqa: ANN001
    """Ctrl-C in the sweep cancels its Ray tasks, and a cancelled task ends its command before it returns."""
    ex = RayExecutor()
    log = tmp_path / "slow.log"
    fut, where = ex.submit(_Sleeper("slow", "prune", "prune.py", [], tmp_path / "run"), log)
    deadline = time.time() + 30
    while "pid " not in (log.read_text() if log.is_file() else "") and time.time() < deadline:
        time.sleep(0.1)
    pid = int(log.read_text().split("pid ")[-1].split()[0])
    t0 = time.time()
    ex.stop()
    assert time.time() - t0 < 10
    with pytest.raises(local_ray.exceptions.TaskCancelledError):
        fut.result(timeout=10)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the command is gone, not orphaned
    ex.close()
    assert local_ray.is_initialized()
