"""univenc: weight-space universality of CNN encodings (Guth & Ménard, 2024).

Modules, one per concept of the paper: ``data`` (and ``audio``), ``models``, ``training``, ``presets``,
``catalogue`` (the zoo as plain data), ``zoo`` (training and loading it), ``spatial``, ``alignment``, ``covariance``,
``similarity``, ``trajectories``, ``experiments``, ``figures``, ``claims``; ``runner`` trains the zoo as jobs,
``results`` keeps what the figures need, ``refs`` resolves model references, ``cli`` is the ``univenc`` command
and ``reproduce`` runs the notebooks.
"""
__version__ = "0.1.0"

from . import data  # noqa: F401  (light; the heavier modules are imported on use)
