"""val.py: ``options`` (ValOptions), ``validator`` (the dataloader, ``evaluate`` and the run), ``coco`` (COCO JSON
output).

Nothing is imported here, so that importing the options does not load the validator.
"""

__all__: list[str] = []
