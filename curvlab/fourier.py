r"""Spectral-bias metrics: how well a network fits each frequency of its target.

Uniform grids (1-D targets sampled at ``x_n = n / N``, ``n = 0..N-1``)
    :func:`dft_amplitudes` gives the amplitude of each integer frequency ``k``, normalized so
    that ``a sin(2 pi k x + phi)`` gives ``a`` (Rahaman et al. 2019 plot ``2 |f_hat(k)| / A``;
    study E plots ``|h_hat(k)| / (N/2) / a_k``). :func:`relative_error` is Xu et al.'s
    ``|h_hat(k) - y_hat(k)| / |y_hat(k)|`` with the *complex* difference, so a prediction with
    the right amplitude and the wrong phase is not counted as learned.

Non-uniform, high-dimensional inputs
    :func:`nudft` is the direct non-uniform DFT ``sum_j y_j exp(-2 pi i k x_j)``, chunked so that
    memory stays bounded. :func:`projection_error` is Xu et al.'s projection method: the inputs
    are projected on one direction (their first principal component by default) and the relative
    error is computed at the requested frequencies, which label the result as given.
    :func:`filtered_error` is the filtering method: low- and high-frequency parts by a
    row-normalized Gaussian kernel, computed in blocks of rows.

Images
    :func:`radial_power_spectrum` averages ``|FFT|^2`` over rings of equal spatial frequency.

Over training
    :class:`SpectralBiasTracker` records one of these metrics every ``every`` steps; its
    :class:`SpectralBiasResult` is what :func:`curvlab.plot.spectral_bias_heatmap` and
    :func:`curvlab.plot.frequency_curves` draw.

References
----------
Rahaman et al. (2019), *On the spectral bias of neural networks*. Xu, Zhang, Luo, Xiao, Ma
(2019), *Frequency principle: Fourier analysis sheds light on deep neural networks*.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import check_int, check_positive
from ._public import public_dir
from .risk import check_output, predict

__all__ = [
    "dft_amplitudes",
    "relative_error",
    "nudft",
    "projection_error",
    "ProjectionError",
    "filtered_error",
    "first_principal_component",
    "radial_power_spectrum",
    "RadialSpectrum",
    "SpectralBiasTracker",
    "SpectralBiasResult",
]

__dir__ = public_dir(globals())


# -- helpers -------------------------------------------------------------------------------
def _tensor(x, what: str) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(x)
        except Exception as e:  # noqa: BLE001
            raise TypeError(
                f"{what} must be a tensor or array-like, got {type(x).__name__}."
            ) from e
    if not (t.is_floating_point() or t.is_complex()):
        t = t.to(torch.get_default_dtype())
    return t


def _int_freqs(freqs, n: int, what: str = "freqs") -> Tensor:
    f = torch.as_tensor(freqs)
    if f.dim() == 0:
        f = f.reshape(1)
    if f.dim() != 1 or f.numel() == 0:
        raise ValueError(f"{what} must be a non-empty 1-D list of integer frequencies.")
    if f.is_floating_point():
        if not torch.equal(f, f.round()):
            raise ValueError(
                f"{what} must be integers on a uniform grid (cycles over the N samples), got "
                f"{f.tolist()}; use nudft() for non-integer frequencies."
            )
    elif f.is_complex() or f.dtype == torch.bool:
        raise TypeError(f"{what} must be integers, got {f.dtype}.")
    f = f.to(torch.long).cpu()
    if (f.abs() > n // 2).any():
        raise ValueError(
            f"{what} {f.tolist()} exceed the Nyquist frequency N/2 = {n // 2} of N = {n} samples: "
            "those frequencies alias to lower ones; sample more points or drop them."
        )
    return f


def _real_dtype(*ts: Tensor) -> torch.dtype:
    dt = torch.float32
    for t in ts:
        r = t.real.dtype if t.is_complex() else t.dtype
        dt = torch.promote_types(dt, r)
    return dt


def _complex_dtype(real: torch.dtype) -> torch.dtype:
    return torch.complex128 if real == torch.float64 else torch.complex64


def _dft_at(y: Tensor, f: Tensor) -> Tensor:
    """Unnormalized DFT of the last axis at integer frequencies ``f`` (any sign)."""
    n = y.shape[-1]
    if y.is_complex():
        Y = torch.fft.fft(y, dim=-1)
        return Y[..., torch.remainder(f, n).to(y.device)]
    Y = torch.fft.rfft(y, dim=-1)
    out = Y[..., f.abs().to(y.device)]
    neg = (f < 0).to(y.device)
    return torch.where(neg, out.conj(), out)


# -- uniform grids -------------------------------------------------------------------------
def dft_amplitudes(y, freqs) -> Tensor:
    r"""Amplitudes of a signal on a uniform grid at integer frequencies.

    For samples ``y_n = y(n / N)``, ``n = 0..N-1`` (one period), returns
    ``c_k |Y(k)|`` with ``Y(k) = sum_n y_n exp(-2 pi i k n / N)``, ``c_k = 2 / N`` for
    ``0 < |k| < N/2`` and ``c_k = 1 / N`` for ``k = 0`` and ``|k| = N/2``: a component
    ``a sin(2 pi k x + phi)`` (or a constant ``a`` for ``k = 0``) gives exactly ``a``.

    Parameters
    ----------
    y
        ``(..., N)`` samples along the last axis (real; extra leading axes are batches).
    freqs
        Integer frequencies (cycles per period), ``|k| <= N / 2``.

    Returns
    -------
    Tensor
        ``(..., K)`` amplitudes, real, in ``y``'s precision.

    Examples
    --------
    >>> import math, torch
    >>> from curvlab.fourier import dft_amplitudes
    >>> x = torch.arange(200, dtype=torch.float64) / 200
    >>> y = 0.5 * torch.sin(2 * math.pi * 5 * x) + 2 * torch.cos(2 * math.pi * 10 * x)
    >>> dft_amplitudes(y, [5, 10, 15]).round(decimals=6).tolist()
    [0.5, 2.0, 0.0]
    """
    y = _tensor(y, "y")
    if y.dim() < 1 or y.shape[-1] == 0:
        raise ValueError("y must have at least one sample along its last axis.")
    n = y.shape[-1]
    f = _int_freqs(freqs, n)
    Y = _dft_at(y, f)
    c = torch.full(f.shape, 2.0 / n, dtype=torch.float64)
    c[(f == 0) | (2 * f.abs() == n)] = 1.0 / n
    return Y.abs() * c.to(device=Y.device, dtype=Y.real.dtype)


def relative_error(pred, target, freqs) -> Tensor:
    r"""Xu et al.'s relative error per frequency on a uniform grid.

    ``|H(k) - Y(k)| / |Y(k)|`` with ``H`` and ``Y`` the DFTs of ``pred`` and ``target`` (as in
    :func:`dft_amplitudes`): the modulus of the *complex* difference, so both amplitude and phase
    must match. 0 means the frequency is learned; a prediction of 0 gives 1.

    Parameters
    ----------
    pred, target
        ``(..., N)`` samples along the last axis; leading axes broadcast.
    freqs
        Integer frequencies ``|k| <= N / 2`` where the target has energy (the peaks of
        ``dft_amplitudes(target, ...)``).

    Returns
    -------
    Tensor
        ``(..., K)`` relative errors.

    Raises
    ------
    ValueError
        If the target has no energy at a requested frequency (the ratio is undefined).

    Examples
    --------
    >>> import math, torch
    >>> from curvlab.fourier import relative_error
    >>> x = torch.arange(100, dtype=torch.float64) / 100
    >>> y = torch.sin(2 * math.pi * 3 * x) + torch.sin(2 * math.pi * 7 * x)
    >>> relative_error(torch.sin(2 * math.pi * 3 * x), y, [3, 7]).round(decimals=6).tolist()
    [0.0, 1.0]
    """
    pred, target = _tensor(pred, "pred"), _tensor(target, "target")
    if pred.shape[-1:] != target.shape[-1:] or target.dim() < 1:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same number "
            "of samples along the last axis."
        )
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target on {target.device}.")
    n = target.shape[-1]
    f = _int_freqs(freqs, n)
    dt = _real_dtype(pred, target)
    pred = pred.to(_complex_dtype(dt) if pred.is_complex() else dt)
    target = target.to(_complex_dtype(dt) if target.is_complex() else dt)
    H, Y = _dft_at(pred, f), _dft_at(target, f)
    scale = target.abs().sum(dim=-1, keepdim=True)
    tiny = 100 * torch.finfo(dt).eps * scale
    if (Y.abs() <= tiny).any():
        bad = sorted({int(k) for k in f[(Y.abs() <= tiny).reshape(-1, len(f)).any(0).cpu()]})
        raise ValueError(
            f"the target has no energy at frequencies {bad}, where the relative error is "
            "undefined: choose frequencies at the peaks of dft_amplitudes(target, ...)."
        )
    return (H - Y).abs() / Y.abs()


# -- non-uniform samples -------------------------------------------------------------------
_NORMS = ("backward", "forward", "ortho")


def nudft(x, y, freqs, *, norm: str = "backward", chunk_size: int | None = None) -> Tensor:
    r"""Direct non-uniform discrete Fourier transform at arbitrary (real) frequencies.

    ``F(k) = s sum_j y_j exp(-2 pi i k x_j)`` with ``s = 1`` (``norm="backward"``, the
    convention of ``torch.fft.fft``), ``1 / N`` (``"forward"``, Xu et al.'s mean) or
    ``1 / sqrt(N)`` (``"ortho"``). On the uniform grid ``x_j = j / N`` and integer ``k`` it
    equals ``torch.fft.fft(y)[k]``. The sum is taken over chunks of samples (and of
    frequencies), so memory stays ``O(chunk)`` whatever ``N``.

    Parameters
    ----------
    x
        ``(N,)`` sample positions (a ``(N, 1)`` column is accepted).
    y
        ``(N,)`` or ``(N, C)`` values, real or complex (``C`` outputs transformed together).
    freqs
        ``(K,)`` frequencies, in cycles per unit of ``x``.
    norm
        ``"backward"`` (default), ``"forward"`` or ``"ortho"``.
    chunk_size
        Samples per chunk; default: about ``2**20 / K`` (16 MiB of complex128 per chunk).
        The phases and sums are computed in double precision and returned in the precision
        of ``x`` and ``y`` (``complex64`` for float32 inputs).

    Returns
    -------
    Tensor
        ``(K,)`` or ``(K, C)`` complex coefficients.

    Examples
    --------
    >>> import torch
    >>> from curvlab.fourier import nudft
    >>> y = torch.randn(16, dtype=torch.float64)
    >>> x = torch.arange(16, dtype=torch.float64) / 16
    >>> torch.allclose(nudft(x, y, torch.arange(16)), torch.fft.fft(y))
    True
    """
    x, y = _tensor(x, "x"), _tensor(y, "y")
    if x.dim() == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 1:
        raise ValueError(
            f"x must hold one position per sample, shape (N,), got {tuple(x.shape)}; project "
            "high-dimensional inputs first (see projection_error)."
        )
    if x.is_complex():
        raise TypeError("x must be real positions.")
    if y.dim() not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have shape (N,) or (N, C) with N = {x.shape[0]} (one value per position), "
            f"got {tuple(y.shape)}."
        )
    if x.device != y.device:
        raise ValueError(f"x is on {x.device} but y on {y.device}.")
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}.")
    if not torch.isfinite(x).all():
        raise ValueError("x has NaN or Inf entries.")
    dt = _real_dtype(x, y)
    cdt = _complex_dtype(dt)
    f = torch.as_tensor(freqs)
    if f.dim() == 0:
        f = f.reshape(1)
    if f.dim() != 1 or f.numel() == 0:
        raise ValueError("freqs must be a non-empty 1-D list of frequencies.")
    if f.is_complex():
        raise TypeError("freqs must be real.")
    # phases and sums in double precision (float32 sums of 10^3+ terms lose digits), returned
    # in the inputs' precision; devices without float64 compute in the inputs' precision
    work = torch.float64 if x.device.type != "mps" else dt
    cwork = _complex_dtype(work)
    f = f.to(device=x.device, dtype=work)
    x = x.to(work)
    Y = y.to(cwork).reshape(y.shape[0], -1)
    n, K = x.shape[0], f.shape[0]
    if chunk_size is None:
        chunk_size = max(1, (1 << 20) // K)
    chunk_size = check_int(chunk_size, "chunk_size")
    fchunk = max(1, min(K, 1 << 16))
    out = torch.zeros(K, Y.shape[1], dtype=cwork, device=x.device)
    two_pi = 2 * math.pi
    for f0 in range(0, K, fchunk):
        fc = f[f0 : f0 + fchunk]
        for j0 in range(0, n, chunk_size):
            phase = torch.outer(fc, x[j0 : j0 + chunk_size])
            phase = two_pi * (phase - phase.round())  # reduce to [-pi, pi] before exp
            E = torch.polar(torch.ones_like(phase), -phase)
            out[f0 : f0 + fchunk] += E @ Y[j0 : j0 + chunk_size]
    if norm == "forward":
        out = out / n
    elif norm == "ortho":
        out = out / math.sqrt(n)
    out = out.to(cdt)
    return out.reshape(K) if y.dim() == 1 else out


@dataclass(frozen=True, eq=False)
class ProjectionError:
    """Result of :func:`curvlab.fourier.projection_error`.

    Attributes
    ----------
    freqs : Tensor
        ``(K,)`` the frequencies, as given: ``error[i]`` belongs to ``freqs[i]``.
    error : Tensor
        ``(K,)`` relative error ``||H(k) - Y(k)|| / ||Y(k)||`` (norm over outputs).
    target_coefficients, pred_coefficients : Tensor
        ``(K,)`` or ``(K, C)`` complex coefficients (``norm="forward"``: means over samples).
    direction : Tensor
        ``(D,)`` unit projection direction.
    coordinates : Tensor
        ``(N,)`` projected coordinates of the centered inputs, the positions of the DFT.

    Examples
    --------
    >>> import math, torch
    >>> from curvlab.fourier import projection_error
    >>> t = torch.arange(32, dtype=torch.float64) / 32
    >>> X = t[:, None] * torch.tensor([0.6, 0.8], dtype=torch.float64)  # points on a line
    >>> y = torch.sin(2 * math.pi * 2 * t) + torch.cos(2 * math.pi * 3 * t)
    >>> res = projection_error(X, y, torch.sin(2 * math.pi * 2 * t), [2, 3])
    >>> res.freqs.tolist(), res.error.round(decimals=6).tolist()  # frequency 3 not learned
    ([2, 3], [0.0, 1.0])
    >>> res.direction.round(decimals=6).tolist(), res.coordinates.shape
    ([0.6, 0.8], torch.Size([32]))
    >>> res.target_coefficients.abs().round(decimals=6).tolist()  # means: half the amplitude
    [0.5, 0.5]
    """

    freqs: Tensor
    error: Tensor
    target_coefficients: Tensor
    pred_coefficients: Tensor
    direction: Tensor
    coordinates: Tensor

    def __repr__(self) -> str:
        shown = 8  # a few frequencies in full, then the count (the repr stays one short line)
        freqs, errors = self.freqs.reshape(-1).tolist(), self.error.reshape(-1).tolist()
        pairs = ", ".join(f"{float(f):g}: {float(e):.4g}" for f, e in zip(freqs[:shown], errors))
        more = f", ... ({len(freqs)} frequencies)" if len(freqs) > shown else ""
        return f"ProjectionError({{{pairs}{more}}}, N={self.coordinates.numel()})"


def first_principal_component(X: Tensor) -> Tensor:
    """Unit first principal component of the rows of ``X`` (centered), sign-fixed so that its
    entry of largest magnitude is positive.

    Parameters
    ----------
    X
        ``(N, D)`` real samples, one per row.

    Returns
    -------
    Tensor
        ``(D,)`` unit vector: the direction of largest variance of the centered rows.

    Examples
    --------
    >>> import torch
    >>> from curvlab.fourier import first_principal_component
    >>> t = torch.linspace(-1.0, 1.0, 9, dtype=torch.float64)
    >>> X = torch.stack([3 * t, -4 * t], dim=1)  # points on the line through (3, -4)
    >>> first_principal_component(X)
    tensor([-0.6000,  0.8000], dtype=torch.float64)
    """
    Xc = X - X.mean(dim=0, keepdim=True)
    n, d = Xc.shape
    if d <= n:
        _, vecs = torch.linalg.eigh(Xc.T @ Xc)
        p = vecs[:, -1]
    else:
        _, vecs = torch.linalg.eigh(Xc @ Xc.T)
        p = Xc.T @ vecs[:, -1]
    p = p / torch.linalg.vector_norm(p)
    if p[p.abs().argmax()] < 0:
        p = -p
    return p


def _flat_inputs(X, what="X") -> Tensor:
    X = _tensor(X, what)
    if X.is_complex():
        raise TypeError(f"{what} must be real.")
    if X.dim() < 1 or X.shape[0] == 0:
        raise ValueError(f"{what} must have at least one sample (first axis).")
    return X.reshape(X.shape[0], -1)


def _outputs(y, n: int, what: str) -> Tensor:
    y = _tensor(y, what)
    if y.dim() == 0 or y.shape[0] != n:
        raise ValueError(f"{what} must have one row per sample ({n}), got shape {tuple(y.shape)}.")
    return y.reshape(n, -1)


def _inputs_and_outputs(X, y_true, y_pred) -> tuple[Tensor, Tensor, Tensor]:
    """``X`` flattened to ``(N, D)`` and ``y_true``, ``y_pred`` checked to be ``N`` outputs of
    the same shape."""
    Xf = _flat_inputs(X)
    n = Xf.shape[0]
    yt = _outputs(y_true, n, "y_true")
    yp = _outputs(y_pred, n, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(
            f"y_true {tuple(yt.shape)} and y_pred {tuple(yp.shape)} must have the same shape."
        )
    return Xf, yt, yp


def projection_error(
    X, y_true, y_pred, freqs, *, direction=None, chunk_size: int | None = None
) -> ProjectionError:
    r"""Xu et al.'s projection method: relative error of the NUDFT along one input direction.

    The inputs (flattened to ``(N, D)`` and centered) are projected on a unit ``direction``
    (the first principal component when ``None``), giving positions ``x_j``; target and
    prediction are transformed with :func:`nudft` (``norm="forward"``) at ``freqs``, and the
    relative error is ``||H(k) - Y(k)|| / ||Y(k)||`` (complex difference, Euclidean norm over
    the ``C`` outputs, e.g. one-hot classes).

    Frequencies are in cycles per unit of projected coordinate, and the result is labeled with
    them as given (``result.freqs[i]`` belongs to ``result.error[i]``). For real outputs
    ``Y(-k)`` is the conjugate of ``Y(k)``, so non-negative frequencies suffice.

    Parameters
    ----------
    X
        ``(N, ...)`` inputs.
    y_true, y_pred
        ``(N,)`` or ``(N, C)`` targets and predictions.
    freqs
        ``(K,)`` frequencies (real).
    direction
        ``(D,)`` projection direction (normalized here); default: first principal component.
    chunk_size
        Passed to :func:`nudft`.

    Returns
    -------
    ProjectionError

    Examples
    --------
    >>> import torch
    >>> from curvlab.fourier import projection_error
    >>> X = torch.randn(500, 3, dtype=torch.float64)
    >>> y = torch.sin(X @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    >>> res = projection_error(X, y, y, [0.1, 0.2])
    >>> res.error.tolist()
    [0.0, 0.0]
    """
    Xf, yt, yp = _inputs_and_outputs(X, y_true, y_pred)
    dt = _real_dtype(Xf, yt, yp)
    Xf = Xf.to(dt)
    if direction is None:
        p = first_principal_component(Xf)
    else:
        p = _tensor(direction, "direction").reshape(-1).to(device=Xf.device, dtype=dt)
        if p.shape[0] != Xf.shape[1]:
            raise ValueError(
                f"direction has {p.shape[0]} entries but the inputs have {Xf.shape[1]} features."
            )
        nrm = torch.linalg.vector_norm(p)
        if not torch.isfinite(nrm) or nrm == 0:
            raise ValueError("direction must be a finite non-zero vector.")
        p = p / nrm
    coords = (Xf - Xf.mean(dim=0, keepdim=True)) @ p
    f = torch.as_tensor(freqs)
    Y = nudft(
        coords, yt.to(yt.dtype if yt.is_complex() else dt), f, norm="forward", chunk_size=chunk_size
    )
    H = nudft(
        coords, yp.to(yp.dtype if yp.is_complex() else dt), f, norm="forward", chunk_size=chunk_size
    )
    num = torch.linalg.vector_norm(H - Y, dim=1)
    den = torch.linalg.vector_norm(Y, dim=1)
    tiny = 100 * torch.finfo(dt).eps * yt.abs().mean()
    if (den <= tiny).any():
        bad = f.reshape(-1)[(den <= tiny).cpu()].tolist()
        raise ValueError(
            f"the target has no energy at frequencies {bad} along this direction, where the "
            "relative error is undefined: choose frequencies where |nudft(target)| peaks."
        )
    squeeze = torch.as_tensor(y_true).dim() == 1
    return ProjectionError(
        freqs=f.reshape(-1).clone(),
        error=num / den,
        target_coefficients=Y[:, 0] if squeeze else Y,
        pred_coefficients=H[:, 0] if squeeze else H,
        direction=p,
        coordinates=coords,
    )


def _ratio(num: Tensor, den: Tensor, what: str) -> float:
    num, den = float(num), float(den)
    if den == 0.0:
        warnings.warn(
            f"the target has no {what}-frequency part at this delta (zero norm), so its relative "
            f"error is undefined ({'inf' if num > 0 else 'nan'}); use a "
            f"{'larger' if what == 'high' else 'smaller'} delta.",
            stacklevel=3,
        )
        return math.inf if num > 0 else math.nan
    return num / den


def filtered_error(
    X, y_true, y_pred, delta: float, *, block_size: int | None = None
) -> tuple[float, float]:
    r"""Xu et al.'s filtering method: relative errors of the low- and high-frequency parts.

    With the row-normalized Gaussian kernel
    ``K_ij = exp(-|x_i - x_j|^2 / (2 delta)) / sum_l exp(-|x_i - x_l|^2 / (2 delta))``,
    ``y_low = K y``, ``y_high = y - y_low`` and the same for the prediction ``h``:

    ``e_low = ||y_low - h_low|| / ||y_low||``, ``e_high = ||y_high - h_high|| / ||y_high||``

    (Frobenius norms over samples and outputs). ``delta`` is the kernel's variance in input
    units: as ``delta -> 0`` the kernel tends to the identity (``e_low -> ||y - h|| / ||y||``,
    nothing is high frequency), as ``delta -> inf`` to the mean (``y_low`` is the mean of
    ``y``). The kernel is applied in blocks of rows, never stored whole: ``N = 10,000`` samples
    take a few tens of MiB.

    A prediction equal to the target gives ``(0.0, 0.0)`` for every ``delta``. Otherwise a band
    where the target has no energy (``||y_low|| = 0`` or ``||y_high|| = 0``, e.g. ``delta`` so
    small that the kernel is the identity in floating point) gives ``nan`` (or ``inf`` when the
    prediction has energy there) with a warning.

    Parameters
    ----------
    X
        ``(N, ...)`` inputs (flattened to ``(N, D)``).
    y_true, y_pred
        ``(N,)`` or ``(N, C)`` targets and predictions.
    delta
        Kernel variance, ``> 0`` (``math.inf`` gives the mean).
    block_size
        Rows of the kernel per block; default ``max(1, 2**22 // N)``.

    Returns
    -------
    (float, float)
        ``(e_low, e_high)``.

    Examples
    --------
    >>> import torch
    >>> from curvlab.fourier import filtered_error
    >>> X = torch.randn(300, 5, dtype=torch.float64)
    >>> y = torch.sin(X[:, 0])
    >>> filtered_error(X, y, y, delta=1.0)
    (0.0, 0.0)
    """
    Xf, yt, yp = _inputs_and_outputs(X, y_true, y_pred)
    n = Xf.shape[0]
    if yt.is_complex() or yp.is_complex():
        raise TypeError("y_true and y_pred must be real.")
    if Xf.device != yt.device or yt.device != yp.device:
        raise ValueError("X, y_true and y_pred must be on the same device.")
    # the kernel variance: inf is allowed (the kernel is then the mean)
    delta = float(check_positive(delta, "delta", tensor_ok=True, allow_inf=True))
    if block_size is None:
        block_size = max(1, (1 << 22) // n)
    block_size = check_int(block_size, "block_size")
    if torch.equal(yt, yp):
        return 0.0, 0.0
    dt = _real_dtype(Xf, yt, yp)
    Xc = Xf.to(dt)
    Xc = Xc - Xc.mean(dim=0, keepdim=True)
    sq = (Xc * Xc).sum(dim=1)
    yt, yp = yt.to(dt), yp.to(dt)
    V = torch.cat([yt, yt - yp], dim=1)  # K is linear: K (y - h) = y_low - h_low
    low = torch.empty_like(V)
    c = yt.shape[1]
    XcT = Xc.T.contiguous()
    # one (block, N) buffer, reused: distances, then in place the row-normalized kernel
    buf = torch.empty(min(block_size, n), n, dtype=dt, device=Xc.device)
    for i0 in range(0, n, block_size):
        i1 = min(n, i0 + block_size)
        W = buf[: i1 - i0]
        if math.isinf(delta):
            W.fill_(1.0 / n)
        else:
            torch.mm(Xc[i0:i1], XcT, out=W)  # x_i . x_j
            W.mul_(-2.0).add_(sq[None, :]).add_(sq[i0:i1, None]).clamp_min_(0.0)
            rows = torch.arange(i1 - i0, device=W.device)
            W[rows, rows + i0] = 0.0  # exact zero self-distance
            W.mul_(-0.5 / delta)
            W.sub_(W.amax(dim=1, keepdim=True)).exp_()  # stable softmax, in place
            W.div_(W.sum(dim=1, keepdim=True))
        low[i0:i1] = W @ V
    y_low, err_low = low[:, :c], low[:, c:]
    y_high, err_high = yt - y_low, (yt - yp) - err_low
    nrm = torch.linalg.vector_norm
    return (
        _ratio(nrm(err_low), nrm(y_low), "low"),
        _ratio(nrm(err_high), nrm(y_high), "high"),
    )


# -- images --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RadialSpectrum:
    """Azimuthally averaged power spectrum (iterates as ``(freqs, power)``).

    Attributes
    ----------
    freqs : Tensor
        ``(R,)`` integer radial frequencies ``0..R-1`` (cycles per image).
    power : Tensor
        ``(..., R)`` mean of ``|FFT|^2 / (H W)`` over the frequencies in each ring.
    counts : Tensor
        ``(R,)`` number of 2-D frequencies in each ring; ``(power * counts).sum(-1)`` is the
        total energy ``sum |image|^2`` (Parseval).

    Examples
    --------
    >>> import math, torch
    >>> from curvlab.fourier import radial_power_spectrum
    >>> i = torch.arange(8, dtype=torch.float64)
    >>> img = torch.cos(2 * math.pi * 2 * i / 8).expand(8, 8)  # 2 cycles along the width
    >>> spec = radial_power_spectrum(img)
    >>> spec.freqs.tolist(), spec.counts.tolist()
    ([0, 1, 2, 3, 4, 5, 6], [1, 8, 12, 16, 22, 4, 1])
    >>> torch.allclose((spec.power * spec.counts).sum(-1), (img**2).sum())  # Parseval
    True
    >>> freqs, power = spec  # unpacks as (freqs, power)
    >>> int(freqs[power.argmax()])
    2
    >>> radial_power_spectrum(torch.zeros(3, 8, 8)).power.shape  # one spectrum per image
    torch.Size([3, 7])
    """

    freqs: Tensor
    power: Tensor
    counts: Tensor

    def __iter__(self):
        return iter((self.freqs, self.power))

    def __repr__(self) -> str:
        batch = tuple(self.power.shape[:-1])
        return (
            f"RadialSpectrum({self.freqs.numel()} radial frequencies"
            + (f", {batch} spectra" if batch else "")
            + ")"
        )


def radial_power_spectrum(images) -> RadialSpectrum:
    r"""Azimuthally averaged power spectrum ``|FFT|^2`` of images (e.g. of an error map).

    The 2-D DFT of each ``H x W`` image is taken over the last two axes; the frequency
    ``(k_y, k_x)`` (integers from ``torch.fft.fftfreq``, in cycles per image) falls in ring
    ``round(sqrt(k_y^2 + k_x^2))`` and each ring's power is averaged. Normalized by ``H W`` so
    that ``sum_r power[r] counts[r] = sum |image|^2``.

    Parameters
    ----------
    images
        ``(..., H, W)`` real or complex tensor.

    Returns
    -------
    RadialSpectrum
        Unpacks as ``freqs, power = radial_power_spectrum(images)``.

    Examples
    --------
    >>> import math, torch
    >>> from curvlab.fourier import radial_power_spectrum
    >>> i = torch.arange(32, dtype=torch.float64)
    >>> img = torch.cos(2 * math.pi * (3 * i[:, None] + 4 * i[None, :]) / 32)
    >>> freqs, power = radial_power_spectrum(img)
    >>> int(freqs[power.argmax()])
    5
    """
    x = _tensor(images, "images")
    if x.dim() < 2 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"images must have shape (..., H, W), got {tuple(x.shape)}.")
    h, w = x.shape[-2:]
    F = torch.fft.fft2(x, dim=(-2, -1))
    P = (F.real**2 + F.imag**2) / (h * w)
    ky = torch.fft.fftfreq(h, d=1.0 / h, dtype=torch.float64)
    kx = torch.fft.fftfreq(w, d=1.0 / w, dtype=torch.float64)
    r = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).round().to(torch.long).reshape(-1)
    R = int(r.max()) + 1
    counts = torch.bincount(r, minlength=R)
    flat = P.reshape(-1, h * w)
    sums = torch.zeros(flat.shape[0], R, dtype=P.dtype, device=P.device)
    sums.index_add_(1, r.to(P.device), flat)
    power = sums / counts.to(device=P.device, dtype=P.dtype)
    return RadialSpectrum(
        freqs=torch.arange(R),
        power=power.reshape(*x.shape[:-2], R),
        counts=counts,
    )


# -- tracking over training ----------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SpectralBiasResult:
    """Per-frequency metric over training, from :class:`curvlab.fourier.SpectralBiasTracker`.

    Attributes
    ----------
    steps : Tensor
        ``(T,)`` the step of each record.
    freqs : Tensor
        ``(K,)`` frequencies (the labels of the columns of ``values``).
    values : Tensor
        ``(T, K)`` the metric at each record and frequency (float64, CPU).
    metric : str
        ``"amplitude"`` (1 = learned), ``"relative_error"`` or ``"projection"`` (0 = learned),
        or the name of a custom callable.
    mse : Tensor
        ``(T,)`` mean squared error between prediction and target at each record (NaN when
        their shapes differ).
    every : int
        Recording period in steps.

    Examples
    --------
    >>> import math, torch
    >>> from curvlab.fourier import SpectralBiasTracker
    >>> x = torch.arange(64, dtype=torch.float64) / 64
    >>> low = torch.sin(2 * math.pi * 2 * x)
    >>> y = low + 0.5 * torch.sin(2 * math.pi * 8 * x)
    >>> tracker = SpectralBiasTracker(x, y, [2, 8], every=1)
    >>> for pred in (torch.zeros_like(y), low, y):  # predictions at steps 0, 1, 2
    ...     _ = tracker.update(pred)
    >>> res = tracker.result()
    >>> res.metric, res.steps.tolist(), res.freqs.tolist()
    ('amplitude', [0, 1, 2], [2, 8])
    >>> res.values.round(decimals=6).tolist()  # the low frequency is learned first
    [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
    >>> res.mse.round(decimals=6).tolist()
    [0.625, 0.125, 0.0]
    >>> step, values = res.first_below(0.2)
    >>> step, values.round(decimals=6).tolist()
    (1, [1.0, 0.0])
    """

    steps: Tensor
    freqs: Tensor
    values: Tensor
    metric: str
    mse: Tensor
    every: int

    def first_below(self, threshold: float) -> tuple[int, Tensor]:
        """``(step, values)`` at the first record whose ``mse`` is ``<= threshold``.

        Study E reports the coefficients at the first epoch where the loss reaches 0.2.
        """
        hits = torch.nonzero(self.mse <= threshold)
        if hits.numel() == 0:
            best = float(self.mse.min()) if self.mse.numel() else float("nan")
            raise ValueError(
                f"the mse never went below {threshold} (best {best:.4g}); train longer or "
                "raise the threshold."
            )
        i = int(hits[0, 0])
        return int(self.steps[i]), self.values[i].clone()

    def __repr__(self) -> str:
        n = self.steps.numel()
        span = f"steps {int(self.steps[0])}..{int(self.steps[-1])}" if n else "no records"
        last = (
            ", last "
            + ", ".join(f"{v:.3g}" for v in self.values[-1].tolist()[:8])
            + (" ..." if self.values.shape[-1] > 8 else "")
            if n
            else ""
        )
        return (
            f"SpectralBiasResult({self.metric!r}, {n} records ({span}), "
            f"{self.freqs.numel()} frequencies{last})"
        )


_METRICS = ("amplitude", "relative_error", "projection")


class SpectralBiasTracker:
    r"""Record a spectral-bias metric of a model's prediction every ``every`` steps.

    Call :meth:`update` once per training step (before the first step too, to record the
    initialization): the ``i``-th call (from 0) records when ``i % every == 0``, labeled step
    ``i`` (pass ``step=`` to label it yourself). :meth:`result` returns a
    :class:`SpectralBiasResult` for :func:`curvlab.plot.spectral_bias_heatmap`.

    Metrics:

    ``"amplitude"`` (default)
        ``dft_amplitudes(pred, freqs) / amplitudes`` (1 = learned): Rahaman et al.'s
        ``2 |f_hat(k)| / A_k`` and study E's ``|h_hat(k)| / (N/2) / a_k``. ``x`` must be the
        uniform grid ``n / N``; ``amplitudes`` default to those of the target.
    ``"relative_error"``
        :func:`relative_error` on the uniform grid (0 = learned).
    ``"projection"``
        :func:`projection_error` along the first principal component of ``x`` (or
        ``direction=``), for high-dimensional inputs (0 = learned).
    a callable
        ``fn(pred, target) -> (K,)`` tensor.

    Parameters
    ----------
    x
        Inputs the model is evaluated on: a tensor, a tuple (passed positionally) or a dict
        (passed as keyword arguments), as in a batch ``(X, y)``; moved to the model's device and
        floating-point dtype.
    target
        Target values at ``x``; a prediction with the same number of entries is reshaped to it.
    freqs
        Frequencies to track.
    metric
        See above.
    amplitudes
        ``(K,)`` reference amplitudes for ``"amplitude"``.
    every
        Recording period, in calls to :meth:`update`.
    direction
        Projection direction for ``"projection"``.
    output
        How to get the prediction from what the model returns (see
        :func:`curvlab.risk.model_output`).

    Notes
    -----
    The model is evaluated through :func:`curvlab.risk.predict`, the data contract of the
    operators and landscapes: under ``torch.no_grad()``, in its current train/eval mode (the
    tracker never flips it), with the buffers that train mode updates restored.

    Examples
    --------
    >>> import math, torch
    >>> from torch import nn
    >>> from curvlab.fourier import SpectralBiasTracker
    >>> x = torch.arange(64).unsqueeze(1) / 64
    >>> y = torch.sin(2 * math.pi * 2 * x[:, 0]) + 0.5 * torch.sin(2 * math.pi * 8 * x[:, 0])
    >>> model = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 1))
    >>> tracker = SpectralBiasTracker(x, y, [2, 8], every=5)
    >>> for _ in range(10):
    ...     _ = tracker.update(model)
    >>> tracker.result().values.shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        x,
        target,
        freqs,
        *,
        metric: str | Callable = "amplitude",
        amplitudes=None,
        every: int = 10,
        direction=None,
        output=None,
    ):
        every = check_int(every, "every")
        if not callable(metric) and metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS} or a callable, got {metric!r}.")
        self.x = x
        self.target = _tensor(target, "target")
        self.freqs = torch.as_tensor(freqs).reshape(-1)
        self.metric = metric
        self.every = every
        self.direction = direction
        self.output = check_output(output)
        self.amplitudes = None
        if metric in ("amplitude", "relative_error"):
            if self.target.dim() == 2 and self.target.shape[1] == 1:
                self.target = self.target[:, 0]
            if self.target.dim() != 1:
                raise ValueError(
                    f"metric {metric!r} needs a 1-D target on a uniform grid, got shape "
                    f"{tuple(self.target.shape)}; use metric='projection' for other inputs."
                )
            _int_freqs(self.freqs, self.target.shape[-1])
        if metric == "amplitude":
            amps = (
                dft_amplitudes(self.target, self.freqs)
                if amplitudes is None
                else (_tensor(amplitudes, "amplitudes").reshape(-1))
            )
            if amps.shape[-1] != self.freqs.numel():
                raise ValueError(
                    f"amplitudes has {amps.shape[-1]} entries for {self.freqs.numel()} frequencies."
                )
            tiny = 100 * torch.finfo(amps.dtype).eps * self.target.abs().max()
            if (amps.abs() <= tiny).any():
                raise ValueError(
                    "an amplitude is zero (the target has no energy at one of the frequencies): "
                    "track only the target's frequencies, or pass amplitudes= explicitly."
                )
            self.amplitudes = amps
        elif metric == "projection" and direction is None:
            self.direction = first_principal_component(_flat_inputs(x))
        elif amplitudes is not None:
            raise ValueError("amplitudes= is only used with metric='amplitude'.")
        self.reset()

    def reset(self) -> None:
        """Forget every record and restart the step counter."""
        self._calls = 0
        self._steps: list[int] = []
        self._values: list[Tensor] = []
        self._mse: list[Tensor] = []

    def _predict(self, model_or_pred) -> Tensor:
        if isinstance(model_or_pred, nn.Module):
            pred = predict(model_or_pred, self.x, output=self.output)
        else:
            pred = _tensor(model_or_pred, "pred")
        pred = pred.detach()
        if pred.shape != self.target.shape and pred.numel() == self.target.numel():
            pred = pred.reshape(self.target.shape)
        return pred.to(self.target.device)

    def _compute(self, pred: Tensor) -> Tensor:
        m = self.metric
        if m == "amplitude":
            amps = self.amplitudes.to(device=pred.device)
            return dft_amplitudes(pred, self.freqs) / amps
        if m == "relative_error":
            return relative_error(pred, self.target, self.freqs)
        if m == "projection":
            return projection_error(
                self.x, self.target, pred, self.freqs, direction=self.direction
            ).error
        out = torch.as_tensor(m(pred, self.target))
        if out.numel() != self.freqs.numel():
            raise ValueError(
                f"the metric callable returned {out.numel()} values for {self.freqs.numel()} "
                "frequencies."
            )
        return out.reshape(-1)

    def record(self, model_or_pred, *, step: int | None = None) -> Tensor:
        """Record now: evaluate a model (or take a prediction tensor) and store the metric."""
        pred = self._predict(model_or_pred)
        vals = self._compute(pred).detach().to(torch.float64)
        if pred.shape == self.target.shape and not pred.is_complex():
            mse = ((pred.to(torch.float64) - self.target.to(torch.float64)) ** 2).mean()
        else:
            mse = torch.tensor(float("nan"), dtype=torch.float64)
        self._steps.append(self._calls if step is None else int(step))
        self._values.append(vals)
        self._mse.append(mse)
        return vals

    def update(self, model_or_pred, *, step: int | None = None) -> bool:
        """Count one step and record if it is due; returns whether it recorded.

        With ``step=None`` the tracker counts calls (the first call is step 0); with ``step``
        given it records when ``step % every == 0``.
        """
        s = self._calls if step is None else int(step)
        due = s % self.every == 0
        if due:
            self.record(model_or_pred, step=s)
        self._calls += 1
        return due

    __call__ = update

    def result(self) -> SpectralBiasResult:
        """The records so far as a :class:`SpectralBiasResult`."""
        k = self.freqs.numel()
        values = (
            torch.stack([v.cpu() for v in self._values])
            if self._values
            else torch.zeros(0, k, dtype=torch.float64)
        )
        mse = (
            torch.stack([m.cpu() for m in self._mse])
            if self._mse
            else torch.zeros(0, dtype=torch.float64)
        )
        name = (
            self.metric
            if isinstance(self.metric, str)
            else getattr(self.metric, "__name__", "custom")
        )
        return SpectralBiasResult(
            steps=torch.tensor(self._steps, dtype=torch.long),
            freqs=self.freqs.clone(),
            values=values,
            metric=name,
            mse=mse,
            every=self.every,
        )
