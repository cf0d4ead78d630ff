"""Bad input as a careless or hostile user gives it: one ``ERROR:`` line naming the file (and entry, line or flag),
exit code 2, no traceback, nothing already written changed, and no code from a checkpoint run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.yolo import Model
from utils.checkpoint import CheckpointError, atomic_save, load_checkpoint, make_checkpoint
from utils.yaml_io import read_yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {  # script -> its arguments around a weights file
    "val.py": lambda w: ["--weights", w, "--data", "data/coco128.yaml", "--imgsz", "64"],
    "detect.py": lambda w: ["--weights", w, "--source", os.path.join(os.environ.get("YOLO_IMAGES_DIR", "."), "bus.jpg"),
                            "--imgsz", "64"],
    "export.py": lambda w: ["--weights", w, "--include", "onnx", "--imgsz", "64"],
    "prune.py": lambda w: ["--weights", w, "--data", "data/coco128.yaml", "--percent", "0.1", "--noval"],
    "train.py": lambda w: ["--weights", w, "--data", "data/coco128.yaml", "--epochs", "1", "--imgsz", "64"],
}


class _RunsShell:
    """Pickles as a call to os.system (loading it unsafely would create the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), YOLO_TRACEBACK="")
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_user_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR:")]
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and len(errors) == 1, res.stderr[-2000:]
    for f in fragments:
        assert f in errors[0], errors[0]


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory, yolov5n_pt: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    torch.save({"model": _RunsShell(d / "pwned")}, d / "evil.pt")
    data = bytearray(yolov5n_pt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a tensor record
    (d / "damaged.pt").write_bytes(bytes(data))
    return {"evil": d / "evil.pt", "damaged": d / "damaged.pt"}


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("kind,fragment", [("evil", "system"), ("damaged", "CRC-32")])
def test_refused_and_damaged_checkpoints_are_user_errors(script: str, kind: str, fragment: str, tmp_path: Path,
                                                         bad_checkpoints: dict[str, Path]) -> None:
    f = bad_checkpoints[kind]
    (tmp_path / "work").mkdir()
    before = _snapshot(f.parent)
    res = _run(script, SCRIPTS[script](str(f)), tmp_path / "work")
    _assert_user_error(res, str(f), fragment)
    assert not (f.parent / "pwned").exists()  # nothing ran
    assert _snapshot(f.parent) == before


def _ours(tmp_path: Path, **change: object) -> Path:
    ckpt = make_checkpoint(Model("yolov5n.yaml", nc=2, names=["a", "b"]), epoch=3)
    ckpt.update(change)
    f = tmp_path / "ckpt.pt"
    atomic_save(ckpt, f)
    return f


@pytest.mark.parametrize("entry,value,message", [
    ("names", "a,b", "'names' must be a list"),
    ("names", [1, 2], "must hold class names"),
    ("arch", ["not", "a", "dict"], "'arch' must be a dict"),
    ("epoch", 2.5, "'epoch' must be an integer"),
    ("nc", 5, "'nc' is 5 but 'names' has 2"),
    ("model", {"model.0.conv.weight": "zeros"}, "'model.0.conv.weight' is not one"),
])
def test_checkpoint_entries_are_checked(tmp_path: Path, entry: str, value: object, message: str) -> None:
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(_ours(tmp_path, **{entry: value}))
    assert str(tmp_path / "ckpt.pt") in str(e.value)


@pytest.mark.slow
def test_weights_that_do_not_fit_the_architecture(tmp_path: Path) -> None:
    wide = make_checkpoint(Model("yolov5s.yaml", nc=2, names=["a", "b"]))["model"]
    f = _ours(tmp_path, model=wide)
    res = _run("val.py", ["--weights", str(f), "--data", "data/coco128.yaml", "--imgsz", "64"], tmp_path)
    _assert_user_error(res, str(f), "entry 'model' does not fit")


@pytest.mark.parametrize("kind,text", [
    ("dataset", "path: x\nnames: [a, b\ntrain: images\n"),
    ("hyp", "lr0: 0.01\n  momentum: 0.9\n"),
    ("model", "nc: 80\nbackbone: [[-1, 1, Conv, [64, 6, 2, 2]]\nhead: []\n"),
    ("sweep", "weights: yolov5n.pt\nprune_ratios: [0.1, 0.2]\n\tbad: tab\n"),
])
def test_malformed_yaml_names_file_line_and_column(tmp_path: Path, kind: str, text: str) -> None:
    f = tmp_path / f"{kind}.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=rf"{f.name}:\d+:\d+: .*not valid YAML") as e:
        read_yaml(f)
    line = int(str(e.value).split(":")[1])
    assert 1 < line <= text.count("\n") + 1


@pytest.mark.slow
@pytest.mark.parametrize("script,flag,args", [
    ("train.py", "--data", ["--weights", "yolov5n.pt", "--epochs", "1"]),
    ("train.py", "--hyp", ["--weights", "yolov5n.pt", "--data", "data/coco128.yaml", "--epochs", "1"]),
    ("train.py", "--cfg", ["--weights", "", "--data", "data/coco128.yaml", "--epochs", "1"]),
    ("sweep.py", "--config", []),
])
def test_malformed_yaml_is_one_error_line(tmp_path: Path, script: str, flag: str, args: list[str]) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("names: [a, b\nkey: {unclosed\n")
    res = _run(script, [*args, flag, str(f), "--project", str(tmp_path / "runs")], tmp_path)
    _assert_user_error(res, f"{f}:")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.parametrize("script,args,message", [
    ("val.py", ["--imgsz", "-64"], "--imgsz must be >= 0 (0: the model's own)"),
    ("detect.py", ["--max-det", "0"], "--max-det must be >= 1"),
    ("detect.py", ["--conf-thres", "1.5"], "--conf-thres must be in [0, 1]"),
    ("export.py", ["--imgsz", "-320"], "--imgsz must be >= 1"),
    ("prune.py", ["--workers", "-1"], "--workers must be >= 0"),
    ("train.py", ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("val.py", ["--project", "{file}"], "is a file, not a folder"),
])
def test_flags_out_of_range_fail_at_parse_time(tmp_path: Path, script: str, args: list[str], message: str,
                                               capsys: pytest.CaptureFixture) -> None:
    import importlib

    f = tmp_path / "plain.txt"
    f.write_text("x")
    mod = importlib.import_module(script[:-3])
    with pytest.raises(SystemExit) as e:
        mod.parse_opt([a.replace("{file}", str(f)) for a in args])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_freeze_beyond_the_model_names_the_flag() -> None:
    from engine.train.setup import freeze_layers

    model = Model("yolov5n.yaml")
    with pytest.raises(ValueError, match=r"--freeze 30: the model has layers 0-24"):
        freeze_layers(model, [30])
    with pytest.raises(ValueError, match=r"--freeze 0 25: .* 25 is out of range"):
        freeze_layers(model, [0, 25])
    assert freeze_layers(model, [25]) and all(not p.requires_grad for p in model.parameters())


def test_disk_full_keeps_the_previous_checkpoint_and_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    import errno

    from utils.cli import run_script

    last = tmp_path / "weights" / "last.pt"
    atomic_save({"epoch": 1}, last)
    before = last.read_bytes()

    def full_disk(obj: object, f) -> None:  # noqa: ANN001 - torch.save's signature
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as e:
        run_script(lambda: atomic_save({"epoch": 2}, last))
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("ERROR: no space left on device writing")
    assert str(last) in err[0]
    assert last.read_bytes() == before and [p.name for p in last.parent.iterdir()] == ["last.pt"]


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201 - yields a Path
    """A real 1 MB file system (tmpfs; needs root, as on this project's machines and CI)."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_real_full_disk_while_saving_is_one_error_line(small_disk: Path) -> None:
    """torch.save reports a full disk as a RuntimeError ('unexpected pos ...'), not an OSError: still one ERROR line
    naming the file, exit 2, and the previous checkpoint intact."""
    last = small_disk / "last.pt"
    atomic_save({"epoch": 1}, last)
    before = last.read_bytes()
    code = ("import sys, torch; from utils.checkpoint import atomic_save; from utils.cli import run_script; "
            "run_script(lambda: atomic_save({'epoch': 2, 'w': torch.zeros(2_000_000)}, sys.argv[1]))")
    p = subprocess.run([sys.executable, "-c", code, str(last)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    err = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(err) == 1, p.stderr
    assert err[0] == f"ERROR: no space left on device writing {last} (the previous file, if any, is intact)"
    assert last.read_bytes() == before and [f.name for f in small_disk.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("script", ["train.py", "val.py", "detect.py"])
def test_a_run_folder_that_cannot_be_made_is_one_error_line(script: str, tmp_path: Path, coco128_dir: Path,
                                                            yolov5n_pt: Path) -> None:
    """--project on a read-only file system (a tmpfs mounted read-only: root may write anywhere else): exit 2 with one
    ERROR line naming the folder and the reason (issue 31, item 3)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        args = {"train.py": ["--data", "data/coco128.yaml", "--epochs", "1", "--workers", "0"],
                "val.py": ["--data", "data/coco128.yaml", "--workers", "0"],
                "detect.py": ["--source", str(next((coco128_dir / "images" / "val2017").glob("*.jpg")))]}[script]
        p = subprocess.run([sys.executable, script, "--weights", str(yolov5n_pt), "--imgsz", "64", *args,
                            "--project", str(ro / "runs")], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[1])
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR") or "Traceback" in ln]
    assert p.returncode == 2 and len(err) == 1, p.stderr[-2000:]
    assert err[0].startswith(f"ERROR: cannot create the run folder {ro / 'runs'}") and "read-only" in err[0], err


def test_resume_finishes_a_run_stopped_while_finalising(tmp_path: Path, coco128_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill after the last epoch's save, before the fp16 rewrite and results.json: --resume finishes the run
    (instead of 'already finished') and removes the half-written temporary checkpoint the kill left."""
    import train
    from engine.train.trainer import Trainer
    from tests.test_train import make_dataset

    data = make_dataset(tmp_path / "ds", coco128_dir, n=4)
    args = ["--weights", "", "--cfg", "models/yolov5n.yaml", "--data", str(data), "--imgsz", "64", "--epochs", "1",
            "--batch-size", "4", "--workers", "0", "--noplots", "--project", str(tmp_path), "--name", "run"]

    def killed(self: Trainer, elapsed: float) -> dict:
        raise KeyboardInterrupt  # stands in for SIGKILL right after the last epoch's checkpoint

    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "after_train", killed)
        with pytest.raises(KeyboardInterrupt):
            train.main(args)
    w = tmp_path / "run" / "weights"
    assert torch.load(w / "last.pt", weights_only=True)["optimizer"] is not None
    assert not (tmp_path / "run" / "results.json").exists()
    (w / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    res = train.main(["--resume", str(w / "last.pt")])
    ck = torch.load(w / "last.pt", weights_only=True)
    assert ck["optimizer"] is None and ck["epoch"] == 0
    assert all(v.dtype == torch.float16 for v in ck["model"].values() if v.is_floating_point())
    assert (tmp_path / "run" / "results.json").is_file() and res["epochs"] == 0
    assert not list(w.glob(".*.tmp"))
    with pytest.raises(ValueError, match="already finished"):
        train.main(["--resume", str(w / "last.pt")])


def test_run_folders_are_claimed_atomically(tmp_path: Path) -> None:
    """Eight threads asking for runs/exp at the same moment get eight different folders."""
    import threading

    from utils.paths import increment_path

    start, got = threading.Barrier(8), []

    def claim() -> None:
        start.wait()
        got.append(increment_path(tmp_path / "runs" / "exp", mkdir=True))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in got) == sorted(["exp"] + [f"exp{n}" for n in range(2, 9)])
    assert all(p.is_dir() for p in got)


def test_run_lock_refuses_a_live_holder_and_takes_over_a_dead_ones(tmp_path: Path) -> None:
    from utils.paths import RunLock

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(str(holder.pid))
        with pytest.raises(ValueError, match=rf"{tmp_path} is in use by another run \(process {holder.pid}\)"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:  # the holder is gone: its lock is stale
        assert (tmp_path / ".lock").read_text() == str(os.getpid()) and lock.held
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
def test_two_trainings_started_together_get_two_folders_and_exist_ok_is_refused_while_one_runs(
        tmp_path: Path, coco128_dir: Path) -> None:
    from tests.test_train import make_dataset

    data = make_dataset(tmp_path / "ds", coco128_dir, n=4)
    args = ["--weights", "", "--cfg", "models/yolov5n.yaml", "--data", str(data), "--imgsz", "64", "--epochs", "1",
            "--batch-size", "4", "--workers", "0", "--noplots", "--project", str(tmp_path / "runs"), "--name", "same"]
    env = dict(os.environ, PYTHONPATH=str(REPO), YOLO_TRACEBACK="", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["same", "same2"] and all((tmp_path / "runs" / r / "results.json").is_file() for r in runs)
    assert not list((tmp_path / "runs").glob("*/.lock"))  # released at the end

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live run holds "same": --exist-ok into it is refused, and nothing in it changes
        (tmp_path / "runs" / "same" / ".lock").write_text(str(holder.pid))
        before = _snapshot(tmp_path / "runs" / "same")
        res = _run("train.py", [*args, "--exist-ok"], tmp_path)
        _assert_user_error(res, "runs/same is in use by another run", f"process {holder.pid}")
        assert _snapshot(tmp_path / "runs" / "same") == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(("entry", "value", "why"), [
    ("epochs", "four", "must be int, got 'four'"),
    ("batch_size", 0, "must be >= 1, got 0"),
    ("optimizer", "Lion", "must be one of SGD, Adam, AdamW, got 'Lion'"),
])
def test_resume_refuses_stored_options_of_the_wrong_type(entry: str, value: object, why: str, tmp_path: Path) -> None:
    """A resume checkpoint whose stored training options are damaged (issue 31, item 4): one ERROR line naming the file
    and the entry, exit 2, the file unchanged; not a TypeError deep in the trainer."""
    from dataclasses import asdict

    from engine.train.options import TrainOptions

    model = Model("yolov5n.yaml", nc=80)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    last = tmp_path / "exp" / "weights" / "last.pt"
    args = {**asdict(TrainOptions(weights="yolov5n.pt", data="data/coco128.yaml", epochs=4)), entry: value}
    atomic_save(make_checkpoint(model, epoch=0, optimizer=opt.state_dict(), train_args=args), last)
    before = last.read_bytes()
    p = subprocess.run([sys.executable, "train.py", "--resume", str(last)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR") or "Traceback" in ln]
    assert p.returncode == 2 and err == [f"ERROR: --resume {last}: its stored training option '{entry}' {why}; the "
                                         "checkpoint is damaged or was edited"], p.stderr[-2000:]
    assert last.read_bytes() == before


def test_ctrl_c_during_training_is_one_line_with_the_resume_command(tmp_path: Path, coco128_dir: Path,
                                                                   yolov5n_pt: Path) -> None:
    """SIGINT after the first checkpoint (issue 31, item 6): exit 130, no traceback, one line naming last.pt and the
    --resume command."""
    import signal
    import time

    cmd = [sys.executable, "train.py", "--weights", str(yolov5n_pt), "--data", "data/coco128.yaml", "--imgsz", "64",
           "--epochs", "50", "--batch-size", "16", "--workers", "0", "--noval", "--noplots", "--project",
           str(tmp_path), "--name", "run"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    last = tmp_path / "run" / "weights" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert last.exists() and p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert f"Interrupted: training stopped; the last checkpoint is {last}, continue with: python train.py --resume " \
           f"{last}" in err.splitlines()


@pytest.mark.parametrize("script", ["val.py", "detect.py", "export.py", "prune.py", "train.py"])
def test_weights_with_nan_are_refused_at_load_by_every_script(script: str, tmp_path: Path, yolov5n_pt: Path,
                                                              coco128_dir: Path) -> None:
    """All-NaN weights validated to 0 and detected nothing, with exit 0 (issue 31, item 5): refused at load naming the
    file and the first tensor, one ERROR line, exit 2."""
    from models.checkpoint import load_model

    model = load_model(yolov5n_pt)[0]
    with torch.no_grad():
        model.model[2].cv1.conv.weight.fill_(float("nan"))
        model.model[4].cv1.conv.weight[0, 0, 0, 0] = float("inf")
    bad = tmp_path / "nan.pt"
    atomic_save(make_checkpoint(model), bad)
    image = str(next((coco128_dir / "images" / "val2017").glob("*.jpg")))
    extra = {"val.py": ["--data", "data/coco128.yaml"], "detect.py": ["--source", image], "export.py": [],
             "prune.py": ["--data", "data/coco128.yaml", "--percent", "0.1"],
             "train.py": ["--data", "data/coco128.yaml", "--epochs", "1"]}[script]
    project = [] if script == "export.py" else ["--project", str(tmp_path / "runs")]  # export writes beside weights
    p = subprocess.run([sys.executable, script, "--weights", str(bad), "--imgsz", "64", *extra, *project],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR") or "Traceback" in ln]
    assert p.returncode == 2 and err == [f"ERROR: {bad}: checkpoint entry 'model' holds NaN or infinite values "
                                         "(first in 'model.2.cv1.conv.weight'); the weights are damaged, e.g. by a "
                                         "training run that diverged"], p.stderr[-2000:]
    # train.py claims its run folder first (opt.yaml, hyp.yaml): no checkpoint there; the others write nothing
    assert not list(tmp_path.rglob("*.pt"))[1:] and not list(tmp_path.glob("nan.*[!t]"))
    assert script == "train.py" or not (tmp_path / "runs").exists()


def test_detect_fails_when_every_input_is_skipped_and_lists_the_skipped_otherwise(tmp_path: Path, yolov5n_pt: Path,
                                                                                  coco128_dir: Path) -> None:
    """A 0-byte image and a broken video (issue 31, item 5): alone they are exit 2 with one ERROR line listing them and
    no run folder; beside a good image, exit 0 with the skipped listed in the output and results.json."""
    import json

    src = tmp_path / "src"
    src.mkdir()
    (src / "empty.jpg").write_bytes(b"")
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(256))
    cmd = [sys.executable, "detect.py", "--weights", str(yolov5n_pt), "--imgsz", "64", "--project", str(tmp_path / "r")]
    repo = Path(__file__).resolve().parents[1]
    p = subprocess.run([*cmd, "--source", str(src)], capture_output=True, text=True, cwd=repo)
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR") or "Traceback" in ln]
    assert p.returncode == 2 and len(err) == 1, p.stderr[-2000:]
    assert err[0].startswith(f"ERROR: --source {src}: every input was skipped (2): ")
    assert "empty.jpg (image unreadable (empty or corrupt))" in err[0] and "broken.mp4 (video cannot be opened)" in err[0]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    shutil.copy(next((coco128_dir / "images" / "val2017").glob("*.jpg")), src / "good.jpg")
    p = subprocess.run([*cmd, "--source", str(src)], capture_output=True, text=True, cwd=repo)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Skipped 2 input(s): " in p.stdout
    res = json.loads(next((tmp_path / "r").glob("*/results.json")).read_text())
    assert len(res["images"]) == 1 and sorted(Path(s["path"]).name for s in res["skipped"]) == ["broken.mp4",
                                                                                                 "empty.jpg"]


def test_val_on_an_onnx_file_that_is_no_detector_is_one_error_line_about_the_file(tmp_path: Path) -> None:
    """An ONNX classifier-like graph (output (1, 3)) is refused at load, naming the file, not deep inside NMS on the
    line of a progress bar (issue 31, item 5)."""
    onnx_file = tmp_path / "notdet.onnx"

    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean((2, 3))

    torch.onnx.export(Pool(), torch.zeros(1, 3, 64, 64), str(onnx_file), dynamo=False)
    repo = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "val.py", "--weights", str(onnx_file), "--data", "data/coco128.yaml",
                        "--imgsz", "64", "--project", str(tmp_path / "runs")], capture_output=True, text=True, cwd=repo)
    assert p.returncode == 2 and p.stderr.splitlines()[-1] == (
        f"ERROR: {onnx_file}: not a detector export: its output has shape [1, 3], expected (batch, boxes, 5 + "
        "classes) as export.py writes"), p.stderr[-2000:]
