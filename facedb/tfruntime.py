"""TensorFlow is imported here only, once, when a model is first needed (it takes seconds)."""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_configured = False


def configure() -> None:
    global _configured
    with _lock:
        if _configured:
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        _configured = True
