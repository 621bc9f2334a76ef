"""Evaluation: image metrics, reference renderers (baselines) and the held-out suite."""
