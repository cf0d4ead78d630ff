"""``--device``: what each value means in each process (a pure decision, tested without GPUs), and several GPUs for
training, which YOLOv5 users pass as ``--device 0,1``: under torchrun one process per GPU (DDP, NCCL); started
without torchrun it is refused with the exact command to use, never run on one GPU alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from tests.test_hardening import REPO, _assert_user_error
from utils import dist
from utils.dist import torchrun_command
from utils.torch_utils import NeedsTorchrun, plan_device, select_device


def _rank(local: int, n: int = 2) -> dict[str, str]:
    return {"RANK": str(local), "WORLD_SIZE": str(n), "LOCAL_RANK": str(local), "LOCAL_WORLD_SIZE": str(n)}


@pytest.mark.parametrize("device, env, gpus, ddp, expected", [
    ("", {}, 0, True, "cpu"),
    ("", {}, 2, True, "cuda:0"),
    ("", _rank(1), 2, True, "cuda:1"),  # torchrun, no --device: each local rank its GPU
    ("cpu", _rank(1), 2, True, "cpu"),  # torchrun on CPU (gloo)
    ("0", {}, 1, True, "cuda:0"),
    ("cuda:1", {}, 1, True, "cuda:0"),  # CUDA_VISIBLE_DEVICES=1 makes GPU 1 the only one, cuda:0
    ("0,1", _rank(0), 2, True, "cuda:0"),
    ("0,1", _rank(1), 2, True, "cuda:1"),
    ("0,1,2,3", _rank(1), 4, True, "cuda:1"),  # 2 processes on 4 GPUs: the last two stay idle (a warning)
    ("0,1", {}, 2, False, "cuda:0"),  # val.py, detect.py, export.py: one process, the first GPU (a warning)
])
def test_plan_device(device: str, env: dict, gpus: int, ddp: bool, expected: str) -> None:
    assert plan_device(device, env, gpus, ddp=ddp).device == expected


@pytest.mark.parametrize("device, env, gpus, batch, fragment", [
    ("0,1", {}, 0, 16, "--device 0,1 asks for CUDA GPUs 0,1, but CUDA is not available on this machine (why): "
                       "use --device cpu"),
    ("0", {}, 0, 16, "--device 0 asks for CUDA GPU 0, but CUDA is not available"),
    ("0,1,2", {}, 2, 18, "--device 0,1,2 asks for 3 CUDA GPUs, but CUDA sees 2"),
    ("0,1", _rank(0, 4), 2, 16, "torchrun started 4 processes on this machine, but --device 0,1 names 2 GPUs 0,1: "
                                "give one GPU per process (--nproc_per_node 2"),
    ("0", _rank(0), 1, 16, "torchrun started 2 processes on this machine, but --device 0 names 1 GPU 0"),
    ("", _rank(2, 3), 2, 16, "torchrun started local rank 2, but CUDA sees 2 GPU(s)"),
    ("0,1", {}, 2, 15, "--batch-size 15 is not a multiple of the 2 GPUs in --device 0,1"),
    ("0,x", {}, 2, 16, "--device '0,x' is not valid"),
])
def test_plan_device_refuses(device: str, env: dict, gpus: int, batch: int, fragment: str) -> None:
    with pytest.raises(ValueError) as e:
        plan_device(device, env, gpus, ddp=True, batch_size=batch, no_cuda="why")
    assert fragment in str(e.value)
    assert not isinstance(e.value, NeedsTorchrun)


def test_several_gpus_for_training_need_torchrun() -> None:
    """Without torchrun's environment, --device 0,1 would train on GPU 0 alone: refused, saying how to launch."""
    with pytest.raises(NeedsTorchrun) as e:
        plan_device("0,1", {"LOCAL_RANK": "0"}, 2, ddp=True, batch_size=16)  # LOCAL_RANK alone is not torchrun
    assert e.value.nproc == 2
    assert "python -m torch.distributed.run --nproc_per_node 2 train.py" in str(e.value)
    plan = plan_device("0,1", {}, 2, ddp=False, batch_size=15)  # one-process scripts split no batch
    assert plan.device == "cuda:0" and "runs on one GPU, 0 (cuda:0)" in plan.warning
    assert "GPUs 2,3 stay idle" in plan_device("0,1,2,3", _rank(0), 4, ddp=True).warning


def test_torchrun_command_keeps_the_users_flags() -> None:
    cmd = torchrun_command(2, "train.py", ["--data", "my data.yaml", "--device", "0,1", "--batch-size", "64"],
                           python="python")
    assert cmd == ("python -m torch.distributed.run --nproc_per_node 2 train.py --data 'my data.yaml' --device 0,1 "
                   "--batch-size 64")
    assert torchrun_command(4, "/abs/train.py", ["--resume"]).endswith("--nproc_per_node 4 /abs/train.py --resume")


def test_train_on_two_gpus_without_torchrun_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.py (command line and Python API) with --device 0,1 on a machine with two GPUs (CUDA faked: nothing runs
    on it) but no torchrun: one error naming the torchrun command with the user's own flags; no run folder."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # select_device sets it; restored afterwards
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    flags = ["--weights", "", "--cfg", "models/yolov5n.yaml", "--device", "0,1", "--batch-size", "32", "--project",
             str(tmp_path / "runs")]
    with pytest.raises(NeedsTorchrun) as e:
        train.main(flags)
    msg = str(e.value)
    assert "--device 0,1 names 2 GPUs, but this process was not started by torchrun" in msg
    assert msg.endswith(" -m torch.distributed.run --nproc_per_node 2 train.py " + " ".join(
        f"'{f}'" if not f or " " in f else f for f in flags))
    with pytest.raises(NeedsTorchrun, match=r"--nproc_per_node 2 train.py --device=0,1 --batch-size=32$"):
        train.run(device="0,1", batch_size=32)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_train_cli_with_two_gpus_on_a_machine_without_cuda(tmp_path: Path) -> None:
    """Here (no CUDA), --device 0,1 is one ERROR line that names the real problem, exit code 2."""
    env = dict(os.environ, PYTHONPATH=str(REPO), YOLO_TRACEBACK="", OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "CUDA_VISIBLE_DEVICES"):
        env.pop(name, None)
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "--device", "0,1", "--epochs", "1", "--project",
                          str(tmp_path / "runs")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    if torch.cuda.is_available():  # a GPU machine: there the launch is what is wrong
        _assert_user_error(res, "not started by torchrun", "-m torch.distributed.run --nproc_per_node 2")
    else:
        _assert_user_error(res, "--device 0,1 asks for CUDA GPUs 0,1, but CUDA is not available on this machine",
                           "use --device cpu")
    assert not (tmp_path / "runs").exists()


def test_select_device_sets_visible_gpus_and_warns_for_one_process_scripts(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert select_device("2,3", batch_size=15) == torch.device("cuda:0")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert "runs on one GPU, 2 (cuda:0)" in caplog.text


@pytest.mark.parametrize("device, backend", [("cuda:1", "nccl"), ("cpu", "gloo")])
def test_process_group_backend(device: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """NCCL for CUDA DDP (after pinning the process to its GPU), gloo on the CPU."""
    calls: list[tuple] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_distributed", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", str(d))))
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: calls.append(("init", backend)))
    dist.init_distributed(torch.device(device))
    assert calls == ([("set_device", device)] if backend == "nccl" else []) + [("init", backend)]
