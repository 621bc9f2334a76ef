"""Launch the rtfm_camera node: `ros2 launch rtfm_ros camera.launch.py [namespace:=front] [world:=...]`.

Needs a system ROS 2 (the `launch` / `launch_ros` packages are not installable with pip). Arguments
left empty keep the value from params_file (default: the installed config/camera.yaml).
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Launch arguments passed to the node as parameters when they are not empty.
OVERRIDES = ("world", "checkpoint", "device", "camera_frame", "world_frame", "camera_info_url")


def _node(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides = {name: arg(name) for name in OVERRIDES if arg(name)}
    overrides["use_sim_time"] = arg("use_sim_time").lower() in ("1", "true", "yes")
    return [Node(
        package="rtfm_ros",
        executable="rtfm_camera",
        name=arg("node_name"),
        namespace=arg("namespace"),
        parameters=[arg("params_file"), overrides],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("rtfm_ros"), "config", "camera.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the camera's topics"),
        DeclareLaunchArgument("node_name", default_value="rtfm_camera", description="node name"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay, sim)"),
        *[DeclareLaunchArgument(name, default_value="", description=f"override the {name} parameter")
          for name in OVERRIDES],
        OpaqueFunction(function=_node),
    ])
