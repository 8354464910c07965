"""Second-order optimizers under one closure contract.

``loss = opt.step(closure)``: the closure recomputes and returns the loss (or
``(loss, output)``) without calling backward; the optimizer takes the gradient itself (with a
double-backward graph only on the steps that take Hessian-vector products), writes a detached
``p.grad`` and frees the graph before returning. The legacy path
``loss.backward(create_graph=True); opt.step()`` works with one
:class:`LegacyStepWarning` where the method allows it.
"""

from ._base import ClosureError, CurvatureOptimizer, LegacyStepWarning, StepContext
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
    "CurvatureOptimizer",
    "StepSizeOptimizer",
    "StepContext",
    "ClosureError",
    "LegacyStepWarning",
]
