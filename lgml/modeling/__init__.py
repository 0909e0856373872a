"""Training, calibration, evaluation and model bundles (``lgml train``)."""
