"""The network-slimming study (``benchmarks/slimming.py``): ``options`` (SlimmingOptions), ``run`` (its stages:
sparsity training, prunes, fine-tunes, baselines, export, val and one interleaved timing), ``report`` (its table and
plot).
"""

__all__: list[str] = []
