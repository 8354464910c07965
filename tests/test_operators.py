"""No tests here: the operator tests are in tests/operators/ (one file per module of
curvlab/operators/), the data-contract tests in tests/test_risk.py.

This module only keeps ``from test_operators import ...`` working for
tests/test_hvp_finite_differences.py; import from ``operator_problems`` instead, then delete it.
"""

from operator_problems import LOSSES, MODES, make_loss, make_problem

__all__ = ["LOSSES", "MODES", "make_loss", "make_problem"]
