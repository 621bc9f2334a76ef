"""Reinforcement learning in CameraNav: PPO (Stable-Baselines3) from pixels, evaluation on held-out worlds.

``rtfm rl train`` trains a CNN policy on the world model's (or MuJoCo's) views, ``rtfm rl eval``
scores a policy, or random actions, on worlds the training never drew, and ``rtfm rl plot``
draws the learning curves. Stable-Baselines3 and torch are imported inside the commands.
"""

from __future__ import annotations

from rtfm_ros.rl.cli import add_parser

__all__ = ["add_parser"]
