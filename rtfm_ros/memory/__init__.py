"""Spatial frame memory: posed frames, context juggling and crash-safe world files."""

from rtfm_ros.memory.errors import WorldFileError
from rtfm_ros.memory.frame import SOURCES, Frame, FrameError
from rtfm_ros.memory.juggling import ContextError, select_context, should_remember
from rtfm_ros.memory.store import FrameMemory
from rtfm_ros.memory.world_file import WorldFile, save_world

__all__ = ["SOURCES", "ContextError", "Frame", "FrameError", "FrameMemory", "WorldFile",
           "WorldFileError", "save_world", "select_context", "should_remember"]
