"""Estimators that take any :class:`~curvlab.CurvatureOperator`.

Eigenvalues (:func:`eigsh`, :func:`power_iteration`, :func:`lanczos`), spectral density
(:func:`spectral_density`), trace and diagonal (:func:`trace`, :func:`diagonal`), the
spectral gap (:func:`spectral_gap`) and linear solves (:func:`cg`). Each runs in torch on the
operator's device and returns a frozen result dataclass. An operator is anything that
satisfies :class:`OperatorLike` (``shape``, ``dtype``, ``device`` and ``@``).
"""

from .._public import public_dir
from ._protocol import OperatorLike
from ._utils import ConvergenceWarning
from .density import spectral_density
from .diagonal import diagonal
from .gap import spectral_gap
from .lanczos import eigsh, lanczos
from .power import power_iteration
from .results import (
    DiagonalResult,
    EigenResult,
    LanczosResult,
    SpectralDensity,
    SpectralGap,
    TraceResult,
)
from .solve import CGResult, cg
from .trace import trace

__all__ = [
    "OperatorLike",
    "ConvergenceWarning",
    "lanczos",
    "eigsh",
    "power_iteration",
    "spectral_density",
    "trace",
    "diagonal",
    "spectral_gap",
    "cg",
    "EigenResult",
    "TraceResult",
    "DiagonalResult",
    "SpectralDensity",
    "SpectralGap",
    "LanczosResult",
    "CGResult",
]

__dir__ = public_dir(globals())
