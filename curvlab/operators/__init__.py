"""Linear operators for the curvature of an empirical risk."""

from .._public import public_dir
from .base import CurvatureOperator, IdentityOperator, ScaledOperator, SumOperator
from .dense import DenseOperator
from .empirical import EmpiricalRiskOperator
from .fisher import EmpiricalFisherOperator
from .ggn import GGNOperator
from .hessian import HessianOperator

__all__ = [
    "CurvatureOperator",
    "IdentityOperator",
    "SumOperator",
    "ScaledOperator",
    "DenseOperator",
    "EmpiricalRiskOperator",
    "HessianOperator",
    "GGNOperator",
    "EmpiricalFisherOperator",
]

__dir__ = public_dir(globals())
