"""slim.py: ``options`` (SlimOptions), ``run`` (the steps towards a budget, each a prune.py and a train.py stage, then
the final fine-tune), ``report`` (source and result exported, scored and timed: report.md/json/png).

Nothing is imported here, so that importing the options does not load the run.
"""

__all__: list[str] = []
