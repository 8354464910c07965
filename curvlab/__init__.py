"""curvlab: the curvature of neural-network losses, on PyTorch."""

from . import fourier, func, landscape, optim, plot, problems
from .linalg import *  # noqa: F403
from .linalg import __all__ as _linalg_all
from .operators import *  # noqa: F403
from .operators import __all__ as _operators_all

__version__ = "0.1.0.dev0"

__all__ = [
    "func",
    "optim",
    "problems",
    "landscape",
    "fourier",
    "plot",
    "__version__",
    *_operators_all,
    *_linalg_all,
]
