"""detect.py sources as YOLOv5 takes them: an http(s) image or video URL, an HTTP stream and a webcam index, served by
a local HTTP server in a thread (no outside network); unreachable sources are one ``ERROR:`` line and exit code 2."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import cv2
import pytest

from engine.detect.predictor import DetectOptions, run as detect_run
from tests.test_hardening import _assert_user_error, _run
from tests.conftest import serve_folder
from tests.test_train import free_port
from utils.data import is_stream, source_name

N_FRAMES, SIZE = 6, (320, 240)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, images_dir: Path) -> Iterator[str]:
    """Serves bus.jpg, clip.avi (6 frames of bus.jpg, MJPG) and the same clip as 'live', a URL that names no media
    file (what an IP camera's feed looks like); yields its base URL."""
    root = tmp_path_factory.mktemp("www")
    shutil.copy(images_dir / "bus.jpg", root / "bus.jpg")
    frame = cv2.resize(cv2.imread(str(images_dir / "bus.jpg")), SIZE)
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    for _ in range(N_FRAMES):
        writer.write(frame)
    writer.release()
    shutil.copy(root / "clip.avi", root / "live")
    with serve_folder(root) as url:
        yield url


def _frames(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_source_kinds_and_names() -> None:
    assert not is_stream("https://example.com/images/bus.jpg?raw=true")  # a media file: downloaded
    assert is_stream("0") and is_stream("rtsp://cam.local/h264") and is_stream("rtsp://cam.local/clip.mp4")
    assert is_stream("http://192.168.1.2:8080/video?action=stream") and not is_stream("data/images")
    assert source_name("https://example.com/images/bus%201.jpg?raw=true") == "bus_1.jpg"
    assert source_name("0") == "webcam0" and source_name("http://cam.local/") == "stream"
    assert source_name("/data/my image.jpg") == "my image.jpg"  # local names are kept as they are


def test_detect_image_url_as_the_local_file(tmp_path: Path, server: str, images_dir: Path, yolov5n_pt: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL's image is downloaded to a temporary folder (removed afterwards) and detected exactly as the local
    copy; results name the URL and the annotated image keeps the URL's file name."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    url = f"{server}/bus.jpg?download=1"
    res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=url, imgsz=320, project=str(tmp_path), name="url"))
    local = detect_run(DetectOptions(weights=str(yolov5n_pt), source=str(images_dir / "bus.jpg"), imgsz=320,
                                     project=str(tmp_path), name="local"))
    assert [r["path"] for r in res["images"]] == [url]
    assert res["images"][0]["detections"] == local["images"][0]["detections"] != []
    assert (Path(res["save_dir"]) / "bus.jpg").is_file()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_detect_video_url_reads_every_frame(tmp_path: Path, server: str, yolov5n_pt: Path) -> None:
    res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=f"{server}/clip.avi", imgsz=320,
                                   project=str(tmp_path)))
    assert [r["frame"] for r in res["images"]] == list(range(1, N_FRAMES + 1))
    assert all(r["detections"] and r["path"] == f"{server}/clip.avi" for r in res["images"])
    assert _frames(Path(res["save_dir"]) / "clip.mp4") == N_FRAMES


def test_detect_http_stream(tmp_path: Path, server: str, yolov5n_pt: Path) -> None:
    """A URL naming no media file is read live (newest frame only, as YOLOv5): at least the first frame, at most all
    of them, in order, into one video named after the URL; the run ends when the stream does."""
    res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=f"{server}/live", imgsz=320, project=str(tmp_path),
                                   save_txt=True))
    frames = [r["frame"] for r in res["images"]]
    assert 1 <= len(frames) <= N_FRAMES and frames == list(range(1, len(frames) + 1))
    assert all(r["detections"] for r in res["images"])
    assert _frames(Path(res["save_dir"]) / "live.mp4") == len(frames)
    assert len(list((Path(res["save_dir"]) / "labels").glob("live_*.txt"))) == len(frames)


def test_detect_webcam_index(tmp_path: Path, server: str, yolov5n_pt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--source 0`` opens camera index 0 (the number, not a file called '0'); the camera is stood in for by the
    served clip. A camera that is not there is one clear error naming it."""
    real, opened = cv2.VideoCapture, []

    def camera(index: object, *args: object) -> cv2.VideoCapture:
        opened.append(index)
        return real(f"{server}/clip.avi") if index == 0 else real(index, *args)

    monkeypatch.setattr(cv2, "VideoCapture", camera)
    res = detect_run(DetectOptions(weights=str(yolov5n_pt), source="0", imgsz=320, project=str(tmp_path)))
    assert opened == [0] and type(opened[0]) is int
    assert res["images"] and all(r["path"] == "0" and r["detections"] for r in res["images"])
    assert (Path(res["save_dir"]) / "webcam0.mp4").is_file()
    with pytest.raises(FileNotFoundError, match="--source 7: cannot open webcam 7"):
        detect_run(DetectOptions(weights=str(yolov5n_pt), source="7", project=str(tmp_path), name="none"))
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_unreachable_sources_are_one_error_line(tmp_path: Path, server: str, yolov5n_pt: Path) -> None:
    """Offline, refused or missing: one ``ERROR:`` line naming the source, exit code 2, and no run folder."""
    closed = f"http://127.0.0.1:{free_port()}"
    for source, why in ((f"{closed}/bus.jpg", "download failed"), (f"{closed}/live", "cannot open stream"),
                        (f"{server}/missing.jpg", "download failed (HTTP 404")):
        res = _run("detect.py", ["--weights", str(yolov5n_pt), "--source", source, "--project", str(tmp_path / "p")],
                   cwd=tmp_path)
        _assert_user_error(res, f"--source {source}", why)
    assert not (tmp_path / "p").exists()


def test_ctrl_c_stops_a_stream_and_keeps_the_results(tmp_path: Path, server: str, yolov5n_pt: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C is how a live source is stopped: the video so far is closed, results.json written, the reader thread
    ended. On files it still interrupts the run."""
    import engine.detect.predictor

    def interrupted(*args: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.detect.predictor, "describe_counts", interrupted)
    res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=f"{server}/live", imgsz=320, project=str(tmp_path)))
    assert (Path(res["save_dir"]) / "results.json").is_file() and (Path(res["save_dir"]) / "live.mp4").is_file()
    assert not [t for t in threading.enumerate() if t.name.startswith("stream ")]
    with pytest.raises(KeyboardInterrupt):
        detect_run(DetectOptions(weights=str(yolov5n_pt), source=f"{server}/bus.jpg", imgsz=320,
                                 project=str(tmp_path)))
