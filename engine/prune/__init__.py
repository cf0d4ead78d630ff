"""prune.py: ``options`` (PruneOptions), ``search`` (the budgets: the prune ratio that meets a GFLOPs, parameter,
latency or speed-up target, or an accuracy guard; each returns its decision), ``pruner`` (the run: importance, masks,
surgery, BN recalibration, the report and the saved checkpoint).

Nothing is imported here, so that importing the options does not load the pruner.
"""

__all__: list[str] = []
