"""Errors a user can act on. Front ends print them as one line, never a traceback."""


class FaceDBError(Exception):
    """Base class for errors that carry a user-facing, one-line message."""


class WeightsUnavailable(FaceDBError):
    pass


class DatabaseUnavailable(FaceDBError):
    pass


class ImageError(FaceDBError):
    """A file that cannot be used as a photo; the message is the reason."""


class NotFound(FaceDBError):
    pass


class TooLarge(FaceDBError):
    """A request that asks for more work or memory than the limits allow."""
