"""rtfm_ros: a ROS 2 camera simulator powered by a real-time generative world model.

The public API: ``WorldModel`` (memory of posed frames + learned renderer) and
``PinholeCamera``. Poses are T_world_camera 4x4 matrices with optical axes (x right,
y down, z forward). ``WorldModel`` is imported lazily so that light modules (geometry,
the CLI's argument parsing) do not pay for torch.
"""

from typing import TYPE_CHECKING

from rtfm_ros.geometry import PinholeCamera

if TYPE_CHECKING:
    from rtfm_ros.world import WorldModel

__all__ = ["PinholeCamera", "WorldModel"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "WorldModel":
        from rtfm_ros.world import WorldModel

        return WorldModel
    raise AttributeError(f"module 'rtfm_ros' has no attribute {name!r}")
