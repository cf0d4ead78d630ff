"""Training: ``train.py`` calls :func:`engine.train.trainer.build_trainer` and ``.train()``.

One concern per module: ``trainer`` (the loop, ``train -> train_one_epoch -> train_one_iter``, and ``build_trainer``,
which resolves ``--resume`` and picks the hooks before the trainer starts), ``setup`` (the model to train, frozen
layers, the run folder, the run to resume), ``hooks`` (``TrainHook`` and the ``StepInfo`` hooks read), ``recipes``
(which hooks the options ask for), ``sparsity_hook`` (BN-gamma L1 sparsity training), ``distill_hook`` (knowledge
distillation), ``log`` (results.csv and TensorBoard). The options live in :mod:`engine.train.options`.

Nothing is imported here, so that importing one module (``engine.train.sparsity_hook``, say) does not load the
whole trainer.
"""

__all__: list[str] = []
