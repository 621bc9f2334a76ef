"""rtfm_ros: a ROS 2 camera simulator powered by a real-time generative world model."""

from rtfm_ros.geometry import PinholeCamera

__all__ = ["PinholeCamera"]
__version__ = "0.1.0"
