"""rtfm_ros: a ROS 2 camera simulator powered by a real-time generative world model.

The public API: ``WorldModel`` (one world: a memory of posed frames rendered over a
``RenderCore`` that many worlds may share: the depth prior and the prepared-frame cache),
``FrameMemory`` and ``PinholeCamera``. Poses are T_world_camera 4x4 matrices with optical axes
(x right, y down, z forward). The torch
parts are imported lazily so that light modules (geometry, the CLI's argument parsing) do
not pay for torch.
"""

import os
from typing import TYPE_CHECKING

# OpenMP threads that spin while waiting make PyTorch ~40x slower on a CPU shared with other
# busy processes (measured on 2 cores: a 64x64 render took 1000 ms instead of 26 ms). Sleeping
# waits cost little when the CPU is idle. Takes effect when rtfm_ros is imported before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rtfm_ros.geometry import PinholeCamera

if TYPE_CHECKING:
    from rtfm_ros.memory import FrameMemory
    from rtfm_ros.render.cache import RenderCore
    from rtfm_ros.world import WorldModel

__all__ = ["FrameMemory", "PinholeCamera", "RenderCore", "WorldModel"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    if name == "WorldModel":
        from rtfm_ros.world import WorldModel

        return WorldModel
    if name == "RenderCore":
        from rtfm_ros.render.cache import RenderCore

        return RenderCore
    if name == "FrameMemory":
        from rtfm_ros.memory import FrameMemory

        return FrameMemory
    raise AttributeError(f"module 'rtfm_ros' has no attribute {name!r}")
