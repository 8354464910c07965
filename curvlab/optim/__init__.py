"""Second-order optimizers under one closure contract.

``loss = opt.step(closure)``: the closure recomputes and returns the loss (or
``(loss, output)``) without calling backward; the optimizer takes the gradient itself (with a
double-backward graph only on the steps that take Hessian-vector products), writes a detached
``p.grad`` and frees the graph before returning. The legacy path
``loss.backward(create_graph=True); opt.step()`` works with one
:class:`LegacyStepWarning` where the method allows it. :func:`step` steps any optimizer
(curvlab's, torch's, a :class:`BlockOptimizer`) with such a closure.
"""

from .._public import public_dir
from ._base import CurvatureOptimizer
from ._closure import ClosureError, LegacyStepWarning, NoGradientWarning, step
from ._context import StepContext
from .adahessian import AdaHessian
from .apollo import Apollo
from .blocks import BlockOptimizer, compose
from .newton import DampedNewton
from .newton_cg import NewtonCG
from .scrn import SCRN
from .sophia import Sophia
from .stepsize import SADH, SSDH, SSVP, StepSizeOptimizer

__all__ = [
    "AdaHessian",
    "Sophia",
    "SCRN",
    "DampedNewton",
    "NewtonCG",
    "Apollo",
    "SSDH",
    "SADH",
    "SSVP",
    "BlockOptimizer",
    "compose",
    "step",
    "CurvatureOptimizer",
    "StepSizeOptimizer",
    "StepContext",
    "ClosureError",
    "LegacyStepWarning",
    "NoGradientWarning",
]

__dir__ = public_dir(globals())
