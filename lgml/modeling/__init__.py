"""Training, calibration, evaluation and model bundles (``lgml train``).

dataset (load, split) -> matrix (model input) -> fit (LightGBM) -> calibrate -> baselines,
evaluate, drift, plots -> bundle (the only reader and writer of bundle folders); ``train`` runs
them in order (:func:`lgml.modeling.train.train_from_config`).
"""
