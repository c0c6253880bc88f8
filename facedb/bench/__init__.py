"""Benchmarks that print figures (`facedb bench ...`); the tests
only check that the harnesses work, never how fast anything is."""

from .search import ExactNeighbours, SyntheticFaces, measure

__all__ = ["ExactNeighbours", "SyntheticFaces", "measure"]
