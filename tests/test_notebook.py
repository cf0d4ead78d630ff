"""tutorial.ipynb: the committed file is its generator's output, and it runs headless with tiny settings, showing the
library's log lines, the search's table, slim.py's report whose figures are those of direct val.run calls, and the
detection picture."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "tutorial.ipynb"

# One epoch on 16 images at 160 px and one epoch per finalist of the search: every stage runs in seconds. 160 px and
# 1.3x as in tests/test_search.py: smaller inputs time too noisily for the budget to be met reliably.
TINY = dict(EPOCHS=1, SPEEDUP=1.3, SLIM_EPOCHS=1, IMGSZ=160, IMAGES=16, BATCH_SIZE=8, WORKERS=0, DEVICE="cpu")


def _generator():  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location("make_tutorial", REPO / "scripts" / "make_tutorial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stream(cell: nbformat.NotebookNode) -> str:
    return "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream")


def _cell(nb: nbformat.NotebookNode, start: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start))


def test_committed_notebook_is_the_generators_output_without_outputs() -> None:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = _generator().build_notebook()
    assert [(c.id, c.cell_type, c.source, c.metadata) for c in committed.cells] == \
           [(c.id, c.cell_type, c.source, c.metadata) for c in built.cells]
    for c in committed.cells:
        assert c.cell_type == "markdown" or (c.outputs == [] and c.execution_count is None)
    assert sum("parameters" in c.metadata.get("tags", []) for c in committed.cells) == 1


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory, datasets_dir: Path, yolov5n_pt: Path
             ) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook run in a fresh kernel from the repository folder, with TINY in place of its parameters cell."""
    from nbclient import NotebookClient

    project = tmp_path_factory.mktemp("tutorial")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = "\n".join(f"{k} = {v!r}" for k, v in {**TINY, "PROJECT": str(project)}.items())
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    return nb, project


@pytest.mark.slow
def test_notebook_runs_with_log_lines_once_per_call(executed: tuple[nbformat.NotebookNode, Path]) -> None:
    nb, _ = executed
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"]
    assert "torch " in _stream(_cell(nb, "# On a fresh Colab"))  # the device check ran (no clone outside Colab)
    source = _stream(_cell(nb, "source = train.run("))
    assert len(re.findall(r"Transferred \d+/\d+ items from", source)) == 1  # run() adds no second log handler
    assert re.search(r"train: Scanning .*16 found", source) and "Starting training for 1 epochs" in source
    slimmed = _stream(_cell(nb, "result = slim.run("))
    assert "slim: budget: 1.3x faster" in slimmed and "slim: chosen: " in slimmed
    assert re.search(r"slim: fine-tuning the best of each kind for 1 epochs", slimmed)
    assert len(re.findall(r"Loaded ONNXBackend\(", _stream(_cell(nb, "photo = ")))) == 1


@pytest.mark.slow
def test_notebook_report_matches_direct_val_runs_and_shows_the_detection(
        executed: tuple[nbformat.NotebookNode, Path], tmp_path: Path) -> None:
    import json

    import val

    nb, project = executed
    shown = [o["data"]["text/markdown"] for o in _cell(nb, "result = slim.run(").outputs if "text/markdown" in
             o.get("data", {})]
    assert len(shown) == 2 and "| **chosen** |" in shown[0] and "Chosen: " in shown[0]
    assert "| mAP50-95 val |" in shown[1] and "| ONNX Runtime ms |" in shown[1]
    report = json.loads((project / "slim" / "report.json").read_text())
    search = json.loads((project / "slim" / "search.json").read_text())
    assert Path(report["final"]["onnx"]) == Path(search["chosen"]["file"])
    data = str(project / "data" / "aquarium.yaml")
    for which in ("source", "final"):  # each ONNX file as deployed, at its own input size (a rectangle: 0, its own)
        size = report[which]["imgsz"]
        for split in ("val", "test"):
            direct = val.run(weights=report[which]["onnx"], data=data, task=split,
                             imgsz=size if isinstance(size, int) else 0, workers=0, device="cpu",
                             project=str(tmp_path), name=which + split)
            assert direct["images"] == TINY["IMAGES"]
            assert report[which][f"map50_95_{split}"] == pytest.approx(direct["mAP50_95"], abs=1e-9)
    assert report["final"]["ort_ms"] < report["source"]["ort_ms"]
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert any("image/jpeg" in o.get("data", {}) for o in last.outputs)
    photos = list((project / "detect").glob("*.jpg"))
    assert len(photos) == 1 and photos[0].stat().st_size > 1000
