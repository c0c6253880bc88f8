"""Errors a user can act on. Front ends print them as one line, never a traceback."""


def one_line(message: object, limit: int = 300) -> str:
    """A message (an exception's, say) as one line of at most `limit` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


class SettingError(FaceDBError, ValueError):
    """A setting (flag or FACEDB_* variable) whose value cannot be used."""


class UnknownModel(SettingError):
    """A model name the manifest does not pin."""
