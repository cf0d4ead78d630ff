"""Write tutorial.ipynb (outputs cleared) from the cells below: ``python scripts/make_tutorial.py``.

The notebook is generated so that its cells stay reviewable as Python; tests/test_notebook.py checks that the committed
file is this script's output and runs it with tiny settings put in place of the cell tagged ``parameters``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

__all__ = ["NOTEBOOK", "build_notebook"]

NOTEBOOK = Path(__file__).resolve().parents[1] / "tutorial.ipynb"

INTRO = """\
# Making YOLOv5n faster on your own data

What the README's main job does, from Python: fine-tune the COCO `yolov5n.pt` on aquarium (7 classes, 448 train /
127 val / 63 test phone photos; `data/aquarium.yaml`), then make it 1.5x faster with `slim.run(..., speedup=1.5)`:
channel slimming, a smaller (or rectangular) input and INT8 are weighed against each other at a *measured* speed-up, the best
of each kind fine-tuned alike, and the most accurate model that meets the budget is exported and compared with the
model it came from on val, test and latency.

Every script has a `run(**kwargs)` that takes its command-line flags as keyword arguments, dashes as underscores
(`val.run(weights="yolov5n.pt", data="data/coco128.yaml", imgsz=640)` is `python val.py --weights yolov5n.pt ...`),
shows the same log lines and returns the dict the command line saves as `results.json`. A keyword that is no flag of
the script is a `TypeError` naming it; a value the command line refuses raises `utils.cli.FlagError` (a `ValueError`)
with the command line's message.

Run the notebook from the repository's top folder. `yolov5n.pt` and the dataset are found through the
`YOLO_WEIGHTS_DIR` and `YOLO_DATASETS_DIR` settings, as on the command line."""

COLAB = """\
# On a fresh Colab GPU runtime (Runtime > Change runtime type > GPU): fetch the project, install it, check the GPU.
# Elsewhere this cell only reports the device. Put the dataset folder (aquarium/) under YOLO_DATASETS_DIR first.
import os
import subprocess
import sys

REPO_URL = os.environ.get("YOLO_SLIM_REPO", "")  # the git URL you got this notebook from
if "google.colab" in sys.modules and not os.path.exists("slim.py"):
    if not REPO_URL:
        raise SystemExit("set REPO_URL (or the YOLO_SLIM_REPO variable) to this project's git URL, then run again")
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "yolo-slim"], check=True)
    os.chdir("yolo-slim")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "requirements.txt"], check=True)
    os.environ.setdefault("YOLO_DATASETS_DIR", "/content/datasets")
    os.environ.setdefault("YOLO_WEIGHTS_DIR", "/content/weights")
import torch

print(f"torch {torch.__version__}, " + (f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
                                        else f"CPU only ({os.cpu_count()} cores): expect about 35 minutes"))"""

PARAMETERS = """\
# The run's sizes. The defaults are the main job's: about 35 minutes on a 2-core CPU, a few on a GPU. The README's
# figures come from a 40-epoch source (EPOCHS = 40, SLIM_EPOCHS = 0).
EPOCHS = 20  # fine-tuning yolov5n.pt on aquarium: the source model
SPEEDUP = 1.5  # how many times faster the result must run (ONNX Runtime, batch 1, one thread)
SLIM_EPOCHS = 10  # each finalist's fine-tune (0: slim.py's default, 1.5x EPOCHS)
IMGSZ = 320  # train, val, export and detect image size (pixels)
IMAGES = None  # images taken from the train, val and test splits each (None: all of them)
BATCH_SIZE = 16
WORKERS = 2
DEVICE = ""  # "" picks the first GPU when there is one, else the CPU; "cpu", "0", ...
PROJECT = "runs/tutorial"  # every run writes a folder under here"""

SETUP = """\
from pathlib import Path

import yaml
from IPython.display import Image, Markdown, display

import detect
import slim
import train
from utils.data import load_dataset_config

project = Path(PROJECT)
aquarium = load_dataset_config("data/aquarium.yaml")
DATA = "data/aquarium.yaml"
if IMAGES:  # the first IMAGES images of each split, as file lists: the same recipe, sooner
    subset = project / "data"
    subset.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        files = sorted(Path(aquarium[split]).glob("*.jpg"))[:IMAGES]
        (subset / f"{split}.txt").write_text("".join(f"{f}\\n" for f in files))
    cfg = {"path": str(subset.resolve()), "train": "train.txt", "val": "val.txt", "test": "test.txt",
           "names": dict(enumerate(aquarium["names"]))}
    (subset / "aquarium.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    DATA = str(subset / "aquarium.yaml")
print(f"dataset {DATA}, classes {aquarium['names']}")"""

CELLS = [
    ("markdown", INTRO),
    ("code", COLAB),
    ("code", PARAMETERS),
    ("code", SETUP),
    ("markdown", "## 1. The source: yolov5n fine-tuned on aquarium\n\nThe model a user has trained and wants "
                 "faster."),
    ("code", 'source = train.run(weights="yolov5n.pt", data=DATA, epochs=EPOCHS, imgsz=IMGSZ, batch_size=BATCH_SIZE,\n'
             '                   workers=WORKERS, device=DEVICE, noval=True, project=str(project), name="source")\n'
             'source_pt = Path(source["save_dir"]) / "weights" / "best.pt"'),
    ("markdown", "## 2. Make it faster\n\nThe source is exported at smaller input sizes, square and as a fixed "
                 "rectangle in the orientation most photos share (aquarium's are three in four portrait, so "
                 "320x256 keeps them at full scale for the pixels of a 288-px square), in float32 and INT8, and "
                 "timed against itself; each size too slow alone becomes a candidate slimmed by what is left of the "
                 "budget (Taylor importance on aquarium's own batches, BatchNorm statistics re-estimated). Every "
                 "candidate is scored on val as it is, the best of each kind (slimming, input size, INT8, a "
                 "combination) fine-tuned for the same epochs, and the most accurate one that meets the budget as "
                 "measured is kept, exported at its own input size and compared with the source. "
                 "`search=\"off\"` slims channels alone, in three steps."),
    ("code", 'result = slim.run(weights=str(source_pt), data=DATA, imgsz=IMGSZ, speedup=SPEEDUP,\n'
             '                  search_epochs=SLIM_EPOCHS, batch_size=BATCH_SIZE, workers=WORKERS,\n'
             '                  project=str(project), name="slim")\n'
             'report = result["report"]\n'
             'display(Markdown((project / "slim" / "search.md").read_text()))\n'
             'display(Markdown((project / "slim" / "report.md").read_text()))\n'
             'display(Image(filename=str(project / "slim" / "report.png"), width=800))'),
    ("markdown", "## 3. Detect\n\nThe chosen model's ONNX file on a val photo, at the input size stored in its "
                 "metadata; the annotated picture is saved in the run's folder."),
    ("code", 'photo = sorted(Path(aquarium["val"]).glob("*.jpg"))[0]\n'
             'found = detect.run(weights=report["final"]["onnx"], source=str(photo), device=DEVICE,\n'
             '                   project=str(project), name="detect")\n'
             'display(Image(filename=str(Path(found["save_dir"]) / photo.name), width=640))'),
    ("markdown", "## The one-shot recipe\n\nSparsity training, one global prune and a fine-tune (the classic network "
                 "slimming of the pruning forks) is still there: `train.run(..., bn_sparsity=True, "
                 "sparsity_rate=\"auto\")`, `prune.run(...)`, or `python benchmarks/slimming.py` for the whole "
                 "study. On aquarium it ended 14.7 points of mAP50-95 below its reference at 1.60x "
                 "(docs/slimming/aquarium.md): starting from the trained model, as above, is what keeps the "
                 "accuracy."),
]


def build_notebook() -> nbformat.NotebookNode:
    """The tutorial notebook, outputs empty; the parameters cell carries the ``parameters`` tag."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "language_info": {"name": "python"}})
    for i, (kind, source) in enumerate(CELLS):
        make = new_markdown_cell if kind == "markdown" else new_code_cell
        cell = make(source, id=f"cell-{i:02d}")  # fixed ids: the file is the same on every run
        if source is PARAMETERS:
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    return nb


def main(out: Path = NOTEBOOK) -> None:
    """Write the notebook to ``out``."""
    nb = build_notebook()
    nbformat.validate(nb)
    nbformat.write(nb, out)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
