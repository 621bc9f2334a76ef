"""The camera node's ROS parameters: every spec of rtfm_ros.camera.config declared with a descriptor
(description, read-only flag) and read back into one frozen CameraNodeConfig.

A bad value at start-up is logged and replaced by its default, or refuses the start, as its spec
says (ParamSpec.on_bad_start); run-time changes are checked by CameraNodeConfig.updated.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from rtfm_ros.camera.config import CAMERA_PARAMS, NODE_PARAMS, CameraNodeConfig, ConfigError, ParamSpec


def declare(node: Node, spec: ParamSpec, name: str | None = None, default: Any = None) -> Any:
    """Declare one parameter and return its checked value (logs and falls back, or raises ConfigError)."""
    name = name or spec.name
    default = spec.default if default is None else default
    # Declared writable first so a bad override can be replaced by the default, then locked.
    # Empty lists carry no type: declared with a type instead (rclpy forbids dynamic typing then).
    typed = isinstance(default, list) and not default
    if typed:
        initial: Any = Parameter.Type.STRING_ARRAY if spec.kind == "str_list" else Parameter.Type.DOUBLE_ARRAY
    else:
        initial = default
    # Lists have no fallback (refused when bad), so they are declared read-only at once: an
    # uninitialised parameter cannot be given a new descriptor later.
    writable = ParameterDescriptor(description=spec.description, dynamic_typing=not typed,
                                   read_only=typed and spec.read_only)
    node.declare_parameter(name, initial, writable)
    try:
        raw = node.get_parameter(name).value
    except ParameterUninitializedException:
        raw = None
    try:
        value = ParamSpec(name, spec.kind, default, spec.description, spec.check).validate(raw)
    except ConfigError as e:
        if spec.on_bad_start == "refuse":
            raise
        node.get_logger().error(f"{e}; using the default {default!r} instead")
        if not isinstance(default, list):
            node.set_parameters([Parameter(name, value=default)])
        value = default
    if spec.read_only and not typed:
        node.set_descriptor(name, ParameterDescriptor(description=spec.description, read_only=True,
                                                      dynamic_typing=not typed))
    return value


def declare_config(node: Node) -> CameraNodeConfig:
    """Declare every parameter (per camera too) and build the config; ConfigError refuses the start."""
    values = {s.name: declare(node, s) for s in NODE_PARAMS}
    named = {}
    for name in values["cameras"]:
        defaults = dict(values, camera_frame=f"{name}_camera_link", optical_frame="", stereo_of="")
        named[name] = {s.name: declare(node, s, f"{name}.{s.name}", defaults[s.name]) for s in CAMERA_PARAMS}
    return CameraNodeConfig.from_values(values, named)
