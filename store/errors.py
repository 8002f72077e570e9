"""Errors that carry a message meant for a person (the CLI prints them as one line)."""


class TastebudError(Exception):
    """A user-facing error: bad input, a missing file, a refused action."""


class StoreMissingError(TastebudError):
    """The store file does not exist yet."""


class StoreBusyError(TastebudError):
    """Another process held the store's lock for longer than the retry deadline."""


class PermissionDeniedError(TastebudError):
    """The actor's role does not allow the requested write."""


class StoreDamagedError(TastebudError):
    """The store file cannot be read as a database: truncated, corrupted, or not a DuckDB file at all."""


class StoreAccessError(TastebudError):
    """The operating system refused access to the store file (permissions)."""
