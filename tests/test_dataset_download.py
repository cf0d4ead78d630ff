"""A dataset YAML's ``download:`` entry, as YOLOv5 uses it: when the val images are missing, the URL (or list of URLs)
is fetched into the datasets directory and unpacked, then the run goes on. Served by a local HTTP server in a thread
(no outside network). Failures say what failed and name the URL and the folder; a ``download:`` that is code is
refused without being run."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from engine.val.validator import ValOptions
from engine.val.validator import run as val_run
from tests.test_hardening import REPO, _assert_user_error
from tests.conftest import serve_folder
from tests.test_train import free_port
from utils.data import load_dataset_config
from utils.download import DownloadError, describe_failure, download_archives

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

N_IMAGES = 2


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path) -> Iterator[str]:
    """Serves, made from two coco128 val images and their labels: ``mini.zip`` (``mini/images`` + ``mini/labels``),
    the same split in two (``mini-images.zip``, ``mini-labels.zip``), ``flat.zip`` (images at the top, no dataset
    folder) and ``page.zip`` (an HTML page, as a captive portal answers). Yields the base URL."""
    root = tmp_path_factory.mktemp("www")
    images = sorted((coco128_dir / "images" / "val2017").glob("*.jpg"))[:N_IMAGES]
    ims = {f"mini/images/val2017/{p.name}": p.read_bytes() for p in images}
    lbs = {f"mini/labels/val2017/{p.stem}.txt": (coco128_dir / "labels" / "val2017" / f"{p.stem}.txt").read_bytes()
           for p in images}
    _zip(root / "mini.zip", {**ims, **lbs})
    _zip(root / "mini-images.zip", ims)
    _zip(root / "mini-labels.zip", lbs)
    _zip(root / "flat.zip", {Path(k).name: v for k, v in ims.items()})
    (root / "page.zip").write_text("<html><body>Sign in to the network</body></html>")
    with serve_folder(root) as url:
        yield url


def _yaml(tmp_path: Path, download: object, path: str = "mini") -> Path:
    file = tmp_path / "mini.yaml"
    file.write_text(yaml.safe_dump({"path": path, "train": "images/val2017", "val": "images/val2017",
                                    "names": yaml.safe_load((REPO / "data" / "coco128.yaml").read_text())["names"],
                                    "download": download}))
    return file


@pytest.fixture
def datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty datasets directory, set as YOLO_DATASETS_DIR."""
    root = tmp_path / "datasets"
    monkeypatch.setenv("YOLO_DATASETS_DIR", str(root))
    return root


def test_val_downloads_a_missing_dataset_and_goes_on(tmp_path: Path, server: str, datasets: Path,
                                                     yolov5n_pt: Path, caplog: pytest.LogCaptureFixture,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Several URLs (images, labels): both fetched with a progress bar, unpacked into the datasets directory, and
    val.py validates the dataset they make; nothing is left of the download but the data."""
    data = _yaml(tmp_path, [f"{server}/mini-images.zip", f"{server}/mini-labels.zip"])
    with caplog.at_level(logging.INFO):
        res = val_run(ValOptions(data=str(data), weights=str(yolov5n_pt), imgsz=128, batch_size=N_IMAGES, workers=0,
                                 project=str(tmp_path / "runs"), noplots=True))
    assert res["images"] == N_IMAGES and res["instances"] > 0
    assert "dataset not found" in caplog.text and f"Downloading {server}/mini-labels.zip into {datasets}" in caplog.text
    assert "mini-images.zip" in capsys.readouterr().err  # the progress bar's label
    assert sorted(p.name for p in datasets.iterdir()) == ["mini"]  # no archive or temporary folder left
    assert len(list((datasets / "mini" / "images" / "val2017").glob("*.jpg"))) == N_IMAGES
    assert len(list((datasets / "mini" / "labels" / "val2017").glob("*.txt"))) == N_IMAGES
    # Present now: the YAML loads without a second download.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert load_dataset_config(data)["val"] == str(datasets / "mini" / "images" / "val2017")
    assert "Downloading" not in caplog.text


def test_one_url_and_a_folder_that_holds_other_data(tmp_path: Path, server: str, datasets: Path) -> None:
    (datasets / "other").mkdir(parents=True)
    (datasets / "other" / "keep.txt").write_text("mine")
    load_dataset_config(_yaml(tmp_path, f"{server}/mini.zip"))
    assert sorted(p.name for p in datasets.iterdir()) == ["mini", "other"]
    assert (datasets / "other" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("name, what", [
    ("missing.zip", "HTTP 404 File not found"),
    ("refused", "connection refused by 127.0.0.1:"),
    ("page.zip", "bad archive: page.zip (48 bytes) is not a zip archive (it begins '<html><body>Sign in"),
])
def test_failed_download_says_what_failed_with_url_and_folder(tmp_path: Path, server: str, datasets: Path,
                                                             name: str, what: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/mini.zip" if name == "refused" else f"{server}/{name}"
    with pytest.raises(FileNotFoundError) as e:
        load_dataset_config(_yaml(tmp_path, url))
    msg = str(e.value)
    assert f"downloading {url} into {datasets} failed: {what}" in msg, msg
    assert str(datasets / "mini" / "images" / "val2017") in msg and "by hand" in msg
    assert "offline" not in msg  # it is known what failed
    assert list(datasets.iterdir()) == []  # nothing half-downloaded left behind


def test_archive_that_does_not_make_the_dataset_path_is_named(tmp_path: Path, server: str, datasets: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"downloaded .*flat.zip into .*, but the val images are still "
                                                r"missing at .*mini.images.val2017.*fix 'path'"):
        load_dataset_config(_yaml(tmp_path, f"{server}/flat.zip"))


def test_timeout_and_dns_failures_are_named(tmp_path: Path) -> None:
    """A server that accepts the connection but never answers times out; a DNS failure and a network error are
    described from the exceptions urllib raises (no outside network is used)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/mini.zip"
        with pytest.raises(DownloadError, match=rf"downloading {url} into .* failed: timed out: no answer from "
                                                r"127.0.0.1:\d+ within 0.5 s"):
            download_archives([url], tmp_path / "d", timeout=0.5, progress=False)
    url = "https://datasets.example.invalid/x.zip"
    dns = urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert describe_failure(dns, url) == ("DNS lookup of datasets.example.invalid failed (Name or service not known): "
                                          "offline, or no such host")
    unreachable = urllib.error.URLError(OSError(101, "Network is unreachable"))
    assert describe_failure(unreachable, url) == "network unreachable for datasets.example.invalid:443 (offline?)"
    assert describe_failure(zipfile.BadZipFile("File is not a zip file"), url) == "bad archive: File is not a zip file"


@pytest.mark.parametrize("entry, what", [
    ("bash data/scripts/get_coco.sh {marker}", "a shell command ('bash data/scripts/get_coco.sh"),
    ("from pathlib import Path\nPath('{marker}').touch()\n", "a Python snippet (2 lines, starting 'from pathlib"),
])
def test_download_code_is_refused_and_never_run(tmp_path: Path, datasets: Path, entry: str, what: str) -> None:
    marker = tmp_path / "ran"
    data = _yaml(tmp_path, entry.format(marker=marker))
    with pytest.raises(FileNotFoundError) as e:
        load_dataset_config(data)
    msg = str(e.value)
    assert f"its download: entry is {what}" in msg and "never run" in msg
    assert f"download the dataset by hand and unpack it into {datasets}" in msg
    assert not marker.exists() and not datasets.exists()
    # Code in a YAML whose data is there is ignored: nothing to download, nothing run.
    (datasets / "mini" / "images" / "val2017").mkdir(parents=True)
    assert load_dataset_config(data)["nc"] == 80 and not marker.exists()


@pytest.mark.slow
def test_cli_download_failure_is_one_error_line(tmp_path: Path, yolov5n_pt: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/mini.zip"
    data = _yaml(tmp_path, url)
    datasets = tmp_path / "datasets"
    env = dict(os.environ, PYTHONPATH=str(REPO), YOLO_TRACEBACK="", YOLO_DATASETS_DIR=str(datasets))
    res = subprocess.run([sys.executable, str(REPO / "val.py"), "--weights", str(yolov5n_pt), "--data", str(data),
                          "--project", str(tmp_path / "runs")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    _assert_user_error(res, f"downloading {url} into {datasets} failed: connection refused")
    assert not (tmp_path / "runs").exists()


def test_zip_members_outside_the_folder_are_refused(tmp_path: Path) -> None:
    """A crafted archive cannot write beside the datasets directory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escaped.txt", b"x")
    www = tmp_path / "www"
    www.mkdir()
    (www / "evil.zip").write_bytes(buf.getvalue())
    with serve_folder(www) as url, pytest.raises(DownloadError, match="member '../escaped.txt' points outside"):
        download_archives([f"{url}/evil.zip"], tmp_path / "d", progress=False)
    assert not (tmp_path / "escaped.txt").exists() and list((tmp_path / "d").iterdir()) == []


def test_official_weights_download_failure_says_what_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same words for a missing official weight (yolov5n.pt) whose download fails."""
    import utils.checkpoint as checkpoint

    url = f"http://127.0.0.1:{free_port()}/{{name}}"
    monkeypatch.setattr(checkpoint, "OFFICIAL_WEIGHTS_URL", url)
    monkeypatch.delenv("YOLO_WEIGHTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"downloading http://127.0.0.1:\d+/yolov5n.pt failed \(connection "
                                                r"refused by 127.0.0.1:\d+ \(nothing listens there\)\)"):
        checkpoint.resolve_weights("yolov5n.pt")
    assert list(tmp_path.iterdir()) == []
