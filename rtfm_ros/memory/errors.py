"""The error every world-file reader raises (codecs, file checks, the SQLite file itself), in a
module of its own so each of them can import it without importing the others."""


class WorldFileError(ValueError):
    """A world file that cannot be used: missing, corrupt, truncated or of an unknown version."""
