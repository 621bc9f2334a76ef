"""Learned parts and how they are trained: network, configs, checkpoints, examples, training loop."""
