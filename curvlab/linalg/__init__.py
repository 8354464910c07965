"""Estimators that take any :class:`~curvlab.operators.CurvatureOperator`."""

from .solve import CGResult, cg

__all__ = ["cg", "CGResult"]
