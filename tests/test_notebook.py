"""tutorial.ipynb: the committed file is its generator's output, and it runs headless with tiny settings, showing the
library's log lines, a comparison whose figures are those of direct val.run calls, and the detection picture."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "tutorial.ipynb"

# One epoch on 16 images at 64 px: every step runs in seconds. Two batches per epoch, so that the learning rate leaves
# 0 and sparsity_rate="auto" has a step to plan for.
TINY = dict(EPOCHS=1, FT_EPOCHS=1, IMGSZ=64, IMAGES=16, PERCENT=0.3, BATCH_SIZE=8, WORKERS=0, DEVICE="cpu")


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
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    return nb, project


@pytest.mark.slow
def test_notebook_runs_with_log_lines_once_per_call(executed: tuple[nbformat.NotebookNode, Path]) -> None:
    nb, _ = executed
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"]
    reference, sparse = _stream(_cell(nb, "reference = train.run(")), _stream(_cell(nb, "sparse = train.run("))
    for text in (reference, sparse):  # INFO lines from the library, each once: run() adds no second handler
        assert len(re.findall(r"Transferred \d+/\d+ items from", text)) == 1
        assert re.search(r"train: Scanning .*16 found", text) and "Starting training for 1 epochs" in text
    assert "--sparsity_rate auto chose S=" in sparse
    assert _stream(_cell(nb, "photo = ")).count("Loaded ONNXBackend(best.onnx") == 1


@pytest.mark.slow
def test_notebook_table_matches_direct_val_runs_and_shows_the_detection(
        executed: tuple[nbformat.NotebookNode, Path], tmp_path: Path) -> None:
    import val

    nb, project = executed
    table, = (o["data"]["text/markdown"] for o in _cell(nb, "rows = compare_models(").outputs if "data" in o)
    rows = {r[0]: r for r in ([x.strip() for x in line.strip("|").split("|")] for line in table.splitlines()[2:])}
    weights = {"reference": project / "reference" / "weights" / "best.pt",
               "sparsity": project / "sparsity" / "weights" / "best.pt",
               "pruned": project / "prune" / "pruned_model.pt",
               "fine-tuned": project / "finetune" / "weights" / "best.pt"}
    assert list(rows) == list(weights)
    data = str(project / "data" / "aquarium.yaml")
    for label, w in weights.items():
        direct = val.run(weights=str(w), data=data, imgsz=TINY["IMGSZ"], batch_size=TINY["BATCH_SIZE"], workers=0,
                         device="cpu", project=str(tmp_path), name=label)
        assert direct["images"] == TINY["IMAGES"]
        for column, key in ((4, "mAP50"), (5, "mAP50_95")):
            assert float(rows[label][column]) == pytest.approx(direct[key], abs=5e-4 + 1e-9), (label, key)
    assert float(rows["reference"][4]) > 0  # a figure, not 0 == 0
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert any("image/jpeg" in o.get("data", {}) for o in last.outputs)
    photos = list((project / "detect").glob("*.jpg"))
    assert len(photos) == 1 and photos[0].stat().st_size > 1000
