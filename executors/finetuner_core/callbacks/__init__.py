"""Callbacks: everything around the training loop that is not the optimisation step itself.

``state`` is what the loop shares with them (TrainState), ``base`` the hooks (Callback); one module per callback:
``log`` (progress lines), ``stop`` (cancellation), ``evaluation`` (every N steps / per epoch / at the end),
``early_stopping`` and ``best_model`` (both over a ``monitor``), ``wiseft`` (weight interpolation at the end),
``loggers`` (experiment loggers: TensorBoard, MLflow, W&B). The training checkpoint's callback lives with the
checkpoint (``training.checkpoint``). This package imports nothing of the training loop.
"""
