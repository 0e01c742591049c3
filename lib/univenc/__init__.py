"""univenc: weight-space universality of CNN encodings (Guth & Ménard, 2024).

Modules, one per concept of the paper: ``data``, ``models``, ``training``, ``zoo``, ``spatial``,
``alignment``, ``covariance``, ``similarity``, ``figures``, ``claims``; ``reproduce`` runs the notebooks.
"""
__version__ = "0.1.0"

from . import data  # noqa: F401  (light; the heavier modules are imported on use)
