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
from dataclasses import fields

from engine.sweep import SweepConfig, load_config, run_sweep
from engine.sweep.config import SETTINGS, STAGE_KINDS
from utils.cli import FlagError, ScriptParser, run_script
from utils.options import argument_group, build_parser, check_options


def _parser() -> ScriptParser:
    """SweepConfig's flags without defaults (a flag not given leaves the config file's value; so does --extra, one stage
    kind's flags per use), and the script's own."""
    p = build_parser(SweepConfig, "sweep.py", __doc__, suppress=True)
    p.add_argument("--config", type=str, default=None, help="sweep YAML (see sweeps/example.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print each stage's command and whether it is done")
    argument_group(p, SETTINGS).add_argument(
        "--extra", action="append", default=argparse.SUPPRESS, metavar="KIND=FLAGS",
        help=f"more flags for one stage kind ({', '.join(STAGE_KINDS)}), e.g. --extra 'sparsity=--noval'")
    return p


def parse_opt(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """Parse the command line; returns (the namespace, the config overrides given on it: only the flags given).

    A value that its field's check refuses is a usage error (exit 2) naming the flag, as in the other scripts.
    """
    p = _parser()
    a = p.parse_args(argv)
    overrides = {f.name: getattr(a, f.name) for f in fields(SweepConfig) if hasattr(a, f.name)}
    items = overrides.pop("extra", [])
    try:
        check_options(SweepConfig(**overrides))  # the other fields keep their defaults, which pass
    except FlagError as e:
        p.error(str(e))
    if items:
        extra = {}
        for item in items:
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
