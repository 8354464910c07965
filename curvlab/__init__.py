"""curvlab: the curvature of neural-network losses, on PyTorch."""

from . import (
    fourier,
    func,
    landscape,
    linalg,
    operators,
    optim,
    params,
    plot,
    problems,
    risk,
    track,
)
from ._distributed import RemoteRankError
from ._progress import Iterate
from ._public import public_dir
from .linalg import *  # noqa: F403
from .linalg import __all__ as _linalg_all
from .operators import *  # noqa: F403
from .operators import __all__ as _operators_all
from .params import flatten, select_params, unflatten
from .risk import EmpiricalRisk

__version__ = "0.1.0.dev0"

__all__ = [
    "linalg",
    "operators",
    "func",
    "optim",
    "params",
    "problems",
    "risk",
    "landscape",
    "fourier",
    "plot",
    "track",
    "EmpiricalRisk",
    "RemoteRankError",
    "Iterate",
    "flatten",
    "unflatten",
    "select_params",
    "__version__",
    *_operators_all,
    *_linalg_all,
]

__dir__ = public_dir(globals())
