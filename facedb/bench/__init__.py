"""Benchmarks that print figures (`facedb bench ...`); the tests
only check that the harnesses work, never how fast anything is."""

from .search import load, measure, synthetic_faces

__all__ = ["load", "measure", "synthetic_faces"]
