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
# Slimming YOLOv5n on your own data

Network slimming on aquarium (7 classes, 448 train / 127 val phone photos; `data/aquarium.yaml`), run from Python:
fine-tune the COCO `yolov5n.pt` as the unpruned reference, train with sparsity, prune, fine-tune the pruned model,
compare, export to ONNX and detect.

Every script has a `run(**kwargs)` that takes its command-line flags as keyword arguments, dashes as underscores
(`val.run(weights="yolov5n.pt", data="data/coco128.yaml", imgsz=640)` is `python val.py --weights yolov5n.pt ...`),
shows the same log lines and returns the dict the command line saves as `results.json`. A keyword that is no flag of
the script is a `TypeError` naming it; a value the command line refuses raises `utils.cli.FlagError` (a `ValueError`)
with the command line's message.

Run the notebook from the repository's top folder. `yolov5n.pt` and the dataset are found through the
`YOLO_WEIGHTS_DIR` and `YOLO_DATASETS_DIR` settings, as on the command line."""

PARAMETERS = """\
# The run's sizes. The defaults take a while on a CPU and a few minutes on a GPU; the README's study uses
# 20 + 20 epochs at 320 px on all images (figures in docs/slimming/aquarium.md).
EPOCHS = 10  # reference fine-tune and sparsity training, each
FT_EPOCHS = 10  # fine-tuning the pruned model
IMGSZ = 320  # train, val, export and detect image size (pixels)
IMAGES = None  # images taken from the train and val splits each (None: all of them)
PERCENT = 0.5  # share of prunable channels to remove
BATCH_SIZE = 16
WORKERS = 4
DEVICE = ""  # "" picks the first GPU when there is one, else the CPU; "cpu", "0", ...
PROJECT = "runs/tutorial"  # every run writes a folder under here"""

SETUP = """\
from pathlib import Path

import yaml
from IPython.display import Image, Markdown, display

import detect
import export
import prune
import train
import val
from engine.compare import CompareOptions, compare_models, format_table
from utils.data import load_dataset_config

project = Path(PROJECT)
common = dict(imgsz=IMGSZ, batch_size=BATCH_SIZE, workers=WORKERS, device=DEVICE, project=str(project))
aquarium = load_dataset_config("data/aquarium.yaml")
DATA = "data/aquarium.yaml"
if IMAGES:  # the first IMAGES images of each split, as file lists: the same recipe, sooner
    subset = project / "data"
    subset.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        files = sorted(Path(aquarium[split]).glob("*.jpg"))[:IMAGES]
        (subset / f"{split}.txt").write_text("".join(f"{f}\\n" for f in files))
    cfg = {"path": str(subset.resolve()), "train": "train.txt", "val": "val.txt",
           "names": dict(enumerate(aquarium["names"]))}
    (subset / "aquarium.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    DATA = str(subset / "aquarium.yaml")
print(f"dataset {DATA}, classes {aquarium['names']}")"""

CELLS = [
    ("markdown", INTRO),
    ("code", PARAMETERS),
    ("code", SETUP),
    ("markdown", "## 1. The reference: yolov5n fine-tuned on aquarium\n\nThe unpruned model that the slimmed one "
                 "must be compared with, trained as long as the sparsity run."),
    ("code", 'reference = train.run(weights="yolov5n.pt", data=DATA, epochs=EPOCHS, name="reference", **common)\n'
             'reference_pt = Path(reference["save_dir"]) / "weights" / "best.pt"'),
    ("markdown", "## 2. Sparsity training\n\nAn L1 penalty on the BatchNorm gammas of the channels that a prune at "
                 "`PERCENT` would take (ranked by the loss's own Taylor estimate), with its strength chosen for this "
                 "run (`sparsity_rate=\"auto\"`) so that they can reach 0 by its end: the recipe of the README's "
                 "aquarium study. The log says how sparse the model got; the picture shows the gammas epoch by epoch."),
    ("code", 'sparse = train.run(weights="yolov5n.pt", data=DATA, epochs=EPOCHS, name="sparsity", bn_sparsity=True,\n'
             '                   sparsity_rate="auto", sparsity_target=PERCENT, sparsity_importance="taylor",\n'
             '                   sparsity_round=8, **common)\n'
             'sparse_pt = Path(sparse["save_dir"]) / "weights" / "best.pt"\n'
             'display(Image(filename=str(Path(sparse["save_dir"]) / "gamma_hist.png"), width=640))'),
    ("markdown", "## 3. Prune\n\nOne global threshold on the gammas (ranked within their layer, "
                 "`importance=\"relative\"`), kept channels rounded up to multiples of 8; the slimmer model is "
                 "rebuilt, its BatchNorm statistics re-estimated, and validated."),
    ("code", 'pruned = prune.run(weights=str(sparse_pt), data=DATA, percent=PERCENT, importance="relative", round=8,\n'
             '                   name="prune", **common)\n'
             'pruned_pt = Path(pruned["save_dir"]) / "pruned_model.pt"'),
    ("markdown", "## 4. Fine-tune the pruned model\n\n`ft_pruned_model=True` keeps the pruned architecture from the "
                 "checkpoint."),
    ("code", 'finetuned = train.run(weights=str(pruned_pt), data=DATA, epochs=FT_EPOCHS, ft_pruned_model=True,\n'
             '                      name="finetune", **common)\n'
             'finetuned_pt = Path(finetuned["save_dir"]) / "weights" / "best.pt"'),
    ("markdown", "## 5. Compare\n\nParameters, GFLOPs, file size, val mAP and CPU latency of the four models, on the "
                 "same data and machine (the first row is the baseline of the ratios)."),
    ("code", 'rows = compare_models(CompareOptions(weights=[str(reference_pt), str(sparse_pt), str(pruned_pt),\n'
             '                                           str(finetuned_pt)],\n'
             '                                  labels=["reference", "sparsity", "pruned", "fine-tuned"], data=DATA,\n'
             '                                  imgsz=IMGSZ, batch_size=BATCH_SIZE, workers=WORKERS))\n'
             'display(Markdown(format_table(rows)))'),
    ("markdown", "## 6. Export to ONNX\n\nExport checks the file's outputs against PyTorch's; `val.run` scores it "
                 "like a checkpoint (a static ONNX file takes square letterboxed images, not the rectangular batches "
                 "PyTorch gets, so its mAP can differ a little)."),
    ("code", 'exported = export.run(weights=str(finetuned_pt), include=["onnx"], imgsz=IMGSZ, device=DEVICE)\n'
             'onnx_file = exported["exports"][0]["file"]\n'
             'onnx_val = val.run(weights=onnx_file, data=DATA, name="onnx", **common)\n'
             'print(f"ONNX mAP50-95 {onnx_val[\'mAP50_95\']:.3f}, PyTorch {rows[-1][\'mAP50_95\']:.3f}")'),
    ("markdown", "## 7. Detect\n\nThe ONNX model on a val photo; the annotated picture is saved in the run's folder."),
    ("code", 'photo = sorted(Path(aquarium["val"]).glob("*.jpg"))[0]\n'
             'found = detect.run(weights=onnx_file, source=str(photo), imgsz=IMGSZ, device=DEVICE,\n'
             '                   project=str(project), name="detect")\n'
             'display(Image(filename=str(Path(found["save_dir"]) / photo.name), width=640))'),
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
