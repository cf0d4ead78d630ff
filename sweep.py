"""Run a grid of network-slimming experiments and compare them in one table:
``python sweep.py --config sweeps/example.yaml`` (flags override the file's values).

Base training once (or the weights as they are), sparsity training per rate, pruning per (rate, ratio), fine-tuning
per pruned model; each a normal run of train.py / prune.py / val.py in ``<project>/<name>/<kind>/<stage>``. Finished
stages are skipped, so running the same command again resumes a sweep that stopped. Results: results.csv,
results.md, map_vs_latency.png, map_vs_params.png and gamma_hist_s<rate>.png beside sweep.yaml (the settings used).

Independent stages can run at the same time, each after the stages it needs: ``--devices 0,1,2,3`` runs one stage
per GPU (``--devices cpu,cpu``: two on the CPU), and ``--backend ray`` runs them as Ray tasks across a cluster
(``pip install -r requirements-extra.txt``). The tables are the same whichever way the stages ran.
"""

from __future__ import annotations

import argparse
import signal

from engine.sweep import load_config, run_sweep
from engine.sweep.config import STAGE_KINDS
from pruning.masks import MODES
from utils.cli import check_common_flags, run_script


def parse_opt(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """Parse the command line; returns (the namespace, the config overrides given on it)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=str, default=None, help="sweep YAML (see sweeps/example.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print each stage's command and whether it is done")
    g = p.add_argument_group("settings (override the config file)")
    g.add_argument("--weights", type=str, help="starting weights, e.g. yolov5n.pt")
    g.add_argument("--data", type=str, help="dataset.yaml")
    g.add_argument("--imgsz", "--img", "--img-size", type=int, help="train, val and latency image size")
    g.add_argument("--batch-size", type=int, help="training batch size")
    g.add_argument("--base-epochs", type=int, help="epochs of base training (0: use the weights as the base)")
    g.add_argument("--sparsity-rates", type=float, nargs="+", help="sparsity rates S, e.g. 0.01 0.03")
    g.add_argument("--sparsity-epochs", type=int, help="epochs of sparsity training")
    g.add_argument("--prune-ratios", type=float, nargs="+", help="prune ratios (share of prunable channels)")
    g.add_argument("--finetune-epochs", type=int, help="epochs of fine-tuning each pruned model")
    g.add_argument("--finetune-hyp", type=str, help="hyperparameters for fine-tuning")
    g.add_argument("--mode", choices=MODES, help="which BNs are penalised and pruned")
    g.add_argument("--round", type=int, help="round kept channels up to a multiple of this")
    g.add_argument("--workers", type=int, help="max dataloader workers per stage")
    g.add_argument("--jobs", type=int, help="stages run at the same time on --device")
    g.add_argument("--devices", type=str, help="one stage at a time per listed device, e.g. 0,1,2,3 or cpu,cpu "
                                               "(list one twice for two stages on it)")
    g.add_argument("--backend", choices=("local", "ray"), help="local: subprocesses here; ray: Ray tasks on a "
                                                                "cluster (needs requirements-extra.txt)")
    g.add_argument("--ray-address", type=str, help="backend ray: the cluster to join (default: $RAY_ADDRESS, else "
                                                   "a Ray instance started here)")
    g.add_argument("--ray-cpus", type=float, help="backend ray: CPUs each stage asks for (default 1)")
    g.add_argument("--project", type=str, help="sweeps go to project/name")
    g.add_argument("--name", type=str, help="sweeps go to project/name (the same name resumes)")
    g.add_argument("--device", type=str, help="every stage's device, i.e. 0, or cpu (latency is always measured on "
                                              "CPU); with --backend ray, how many GPUs each stage asks for")
    g.add_argument("--latency-repeats", type=int, help="timed forward passes per model")
    g.add_argument("--latency-warmup", type=int, help="untimed forward passes first")
    g.add_argument("--latency-threads", type=int, help="CPU threads while timing (0: PyTorch's default)")
    g.add_argument("--extra", action="append", default=None, metavar="KIND=FLAGS",
                   help=f"more flags for one stage kind ({', '.join(STAGE_KINDS)}), e.g. --extra 'sparsity=--noval'")
    a = p.parse_args(argv)
    check_common_flags(p, a)
    overrides = {k: v for k, v in vars(a).items() if k not in ("config", "dry_run", "extra")}
    if a.extra:
        extra = {}
        for item in a.extra:
            kind, sep, flags = item.partition("=")
            if not sep:
                p.error(f"--extra {item!r}: write KIND=FLAGS, e.g. --extra 'finetune=--cos-lr'")
            extra[kind] = flags
        overrides["extra"] = extra
    return a, overrides


def main(argv: list[str] | None = None) -> dict:
    """Entry point: load the settings (errors before anything runs), run or resume the sweep."""
    a, overrides = parse_opt(argv)
    cfg = load_config(a.config, overrides)

    def on_term(signum, frame) -> None:  # noqa: ANN001 - a killed sweep stops its stages like Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return run_sweep(cfg, dry_run=a.dry_run)
    except KeyboardInterrupt:  # the stages are stopped and the tables written by now
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    if run_script(main)["failed"]:
        raise SystemExit(1)
