"""facedb: a face-search database. `from facedb import FaceDB`."""

__version__ = "0.1.0"

__all__ = ["FaceDB", "Settings", "__version__"]


def __getattr__(name: str):
    # Lazy, so `facedb --help` does not pay for numpy, SQLAlchemy or TensorFlow.
    if name == "FaceDB":
        from .api import FaceDB

        return FaceDB
    if name == "Settings":
        from .config import Settings

        return Settings
    raise AttributeError(name)
