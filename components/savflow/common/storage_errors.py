"""The errors every storage backend raises, each naming the URI (so callers catch one family, whatever the
scheme)."""


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI."""


class NotFoundError(StorageError, FileNotFoundError):
    """The object or file does not exist."""


class AlreadyExistsError(StorageError, FileExistsError):
    """A create-only write found the name taken."""

