"""Gymnasium environments whose observations the world model renders.

Importing this package registers ``rtfm/CameraNav-v0``: ``gym.make`` gives the single env
(rtfm_ros.envs.camera_nav), ``gym.make_vec(..., vectorization_mode="vector_entry_point")`` the
batched one (rtfm_ros.envs.vector). Nothing heavy (torch, MuJoCo) is imported here.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENV_ID = "rtfm/CameraNav-v0"
MAX_EPISODE_STEPS = 200

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="rtfm_ros.envs.camera_nav:CameraNavEnv",
        vector_entry_point="rtfm_ros.envs.vector:CameraNavVectorEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )

__all__ = ["ENV_ID", "MAX_EPISODE_STEPS"]
