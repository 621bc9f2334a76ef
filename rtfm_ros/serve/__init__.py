"""`rtfm serve`: walk a world in the browser.

command (arguments) -> server (aiohttp: page, sockets, uploads) -> session (one tab's camera and
render loop) -> shared (the one world behind a lock) <- seeding (demo room, photos, uploads).
"""

from rtfm_ros.serve.command import add_parser, run

__all__ = ["add_parser", "run"]
