"""The main job (the README's first command, through scripts/main_job.sh): what a user does with their own data.

yolov5n.pt is fine-tuned on the dataset (the "source"), then slim.py makes it ``SPEEDUP`` times faster with its
defaults (a search over channel slimming, input size and INT8: the most accurate model that meets the budget as
measured) and ends with the before/after table. Both are stages with a live progress line and a log in
``runs/main_job/<NAME>/logs``; the same command resumes an interrupted job. Settings come from the environment:
``EPOCHS`` (source fine-tune, default 20), ``SLIM_EPOCHS`` (each finalist's fine-tune, default 10 to fit ~35 minutes;
0: slim.py's own default, 1.5x EPOCHS), ``SPEEDUP`` (1.5), ``IMGSZ`` (320), ``DATA`` (data/aquarium.yaml), ``NAME``
(aquarium). The last line printed is the slim run's folder (report.md/json/png, search.md/json/png, the chosen model
in chosen/).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root's packages

from engine.progress import PlannedStage  # noqa: E402 - after the path set-up above
from engine.slim.run import SlimOptions, final_epochs, slim_plan  # noqa: E402
from engine.slim.search import TYPICAL_FINALISTS  # noqa: E402
from engine.slim.run import run as slim  # noqa: E402
from engine.stages import StageRunner  # noqa: E402
from engine.train.options import TrainOptions  # noqa: E402
from utils.cli import FlagError, run_script  # noqa: E402
from utils.options import to_argv  # noqa: E402

# Measured on the 2-core CPU at 320 px (slim.py --speedup 1.5 from a 40-epoch source): 22 s an epoch for yolov5n on
# aquarium, 21 s for a finalist's with its validation, ~15 minutes for measuring sizes, screening, the final timing and
# the report.
SOURCE_EPOCH_S, FINALIST_EPOCH_S, SEARCH_OTHER_S = 22, 21, 15 * 60


def _setting(name: str, default: str, kind: type) -> object:
    value = os.environ.get(name, default)
    try:
        return kind(value)
    except ValueError:
        raise FlagError(f"environment variable {name}={value!r}: expected {'an integer' if kind is int else 'a number'}")


def main() -> Path:
    """Run (or resume) the main job; returns the slim run's folder."""
    epochs, speedup = _setting("EPOCHS", "20", int), _setting("SPEEDUP", "1.5", float)
    slim_epochs = _setting("SLIM_EPOCHS", "10", int)
    imgsz, data, name = _setting("IMGSZ", "320", int), os.environ.get("DATA", "data/aquarium.yaml"), \
        os.environ.get("NAME", "aquarium")
    if epochs < 1:
        raise FlagError(f"environment variable EPOCHS={epochs}: must be at least 1")
    if slim_epochs < 0:
        raise FlagError(f"environment variable SLIM_EPOCHS={slim_epochs}: must be 0 (slim.py's default) or more")
    root = Path("runs/main_job") / name
    opt = SlimOptions(weights=str(root / "source" / "weights" / "best.pt"), data=data, imgsz=imgsz, speedup=speedup,
                      search_epochs=slim_epochs, project=str(root), name="slim")
    SlimOptions.validate(opt)  # a bad setting is refused before the source trains
    cap, _ = final_epochs(opt, epochs)
    each = slim_epochs or cap
    seconds = (epochs * SOURCE_EPOCH_S + TYPICAL_FINALISTS * each * FINALIST_EPOCH_S + SEARCH_OTHER_S) * \
        (imgsz / 320) ** 2
    print(f"main job: fine-tune yolov5n.pt on {data} for {epochs} epochs (the source), then slim.py --speedup "
          f"{speedup:g} (slimming, input size and INT8 searched; each finalist fine-tuned {each} epochs); expected "
          f"about {seconds / 60:.0f} minutes on a 2-core CPU at {imgsz} px (less on a GPU)", flush=True)
    runner = StageRunner(root, prefix="main job", plan=[PlannedStage("source", epochs), *slim_plan(opt, cap)])
    runner.train("source", to_argv(TrainOptions(weights="yolov5n.pt", data=data, imgsz=imgsz, epochs=epochs,
                                                batch_size=16, workers=2, noval=True)))
    slim(opt)
    out = root / "slim"
    print(f"main job: report in {out} (report.md/json/png, the search's table search.md; the model to deploy in "
          f"{out / 'chosen'})")
    print(out, flush=True)
    return out


if __name__ == "__main__":
    run_script(main)
