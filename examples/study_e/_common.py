"""Helpers shared by study E's gallery pages (not a page: ``_common`` files are ignored).

- :func:`original_frequency_error`: the study's own frequency metric (a non-uniform DFT of
  scalar outputs along raw principal-component coordinates, the frequencies and the sign of the
  ``nfft`` package's adjoint transform), re-implemented from its description with
  :func:`curvlab.fourier.nudft`.
- :func:`pca_projection`: coordinates on the first principal component (centered, unscaled).
- :class:`OriginalSCRN`: the study's SCRN as described in its write-up and seed notes
  (perturbation drawn from ``[0, 1)^d``, inner step ``1 / (20 l)``, the inner loop stops once
  ``||H Delta|| > 200``), for the pages' original mode; curvlab's :class:`curvlab.optim.SCRN`
  is the fixed version.
- :func:`ellipse_segmentation`: a synthetic stand-in for HC18 (filled ellipse masks under an
  ultrasound-like image: a bright, partly shadowed elliptical outline in speckle noise) and
  :func:`hc18`, the real data set read from disk.
- :class:`UNet`: a two-level U-Net (convolution, batch norm, ReLU), small enough for a CPU.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curvlab.fourier import first_principal_component, nudft

#: ``nfft.nfft_adjoint(x, f, 20)`` returns the coefficients at k = -10, ..., 9, in this order.
ORIGINAL_FREQS = torch.arange(-10, 10)


def pca_projection(X: torch.Tensor, mean=None, direction=None):
    """``(coords, mean, direction)``: rows of ``X`` (flattened) centered on ``mean`` and projected
    on ``direction`` (by default the training mean and first principal component), unscaled, as
    scikit-learn's ``PCA(n_components=1).transform``. The sign of the direction is arbitrary;
    the relative errors below do not depend on it."""
    Xf = X.reshape(len(X), -1).to(torch.float64)
    if mean is None:
        mean = Xf.mean(0)
    if direction is None:
        direction = first_principal_component(Xf)
    return (Xf - mean) @ direction, mean, direction


def original_frequency_error(x, y_true, y_pred, freqs=ORIGINAL_FREQS) -> torch.Tensor:
    r"""The study's relative error :math:`|F_{\rm pred}(k) - F_{\rm true}(k)| / |F_{\rm true}(k)|`
    with :math:`F(k) = \sum_j y_j e^{+2\pi i k x_j}` (the ``nfft`` adjoint's sign) at integer
    ``k`` in cycles per unit of the raw coordinate ``x``; ``y`` are scalars (class labels,
    projected masks). For real ``y`` the error at ``-k`` equals the error at ``k``."""
    x = torch.as_tensor(x, dtype=torch.float64)
    f = -torch.as_tensor(freqs, dtype=torch.float64)  # nudft uses exp(-2 pi i k x)
    Ft = nudft(x, torch.as_tensor(y_true, dtype=torch.float64), f)
    Fp = nudft(x, torch.as_tensor(y_pred, dtype=torch.float64), f)
    return ((Fp - Ft).abs() / Ft.abs()).to(torch.float64)


def lasso_weights(X: np.ndarray, y: np.ndarray, alpha: float = 0.01):
    """The study's regression: Lasso (``alpha``) of the standardized ``y`` on the standardized
    columns of ``X``; returns ``(R^2, weights / max |weight|)``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    Xs = (X - X.mean(0)) / (X.std(0) + 1e-6)
    ys = (y - y.mean()) / (y.std() + 1e-6)
    if y.std() == 0:  # nothing to explain
        return float("nan"), np.zeros(X.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = Lasso(alpha=alpha, max_iter=10_000).fit(Xs, ys)
    w = reg.coef_
    scale = np.abs(w).max()
    return float(reg.score(Xs, ys)), (w / scale if scale > 0 else w)


# -- the original's SCRN (original mode only) -----------------------------------------------
class OriginalSCRN(torch.optim.Optimizer):
    r"""SCRN as the study ran it (one cubic model over all parameters, ``lr`` 1).

    Cauchy step when :math:`\lVert g\rVert \ge l^2/\rho`; otherwise ``inner_steps`` of
    :math:`\Delta \leftarrow \Delta - \eta(\tilde g + H\Delta + \tfrac\rho2\lVert\Delta\rVert
    \Delta)` with :math:`\eta = 1/(20 l)` (its ``step_size`` argument was ignored),
    :math:`\tilde g = g + \sigma\zeta`, :math:`\zeta` uniform on :math:`[0, 1)^d` (not on the
    sphere), :math:`\sigma = c'\sqrt{\epsilon\rho}/l`, stopping early once
    :math:`\lVert H\Delta\rVert > 200`. ``step(closure)``: the closure returns the loss with
    its graph and does not call ``backward``.
    """

    def __init__(self, params, *, rho, l, inner_steps=10, eps=1e-3, c_prime=0.1, seed=0):  # noqa: E741
        super().__init__(
            params, dict(rho=rho, l=l, inner_steps=inner_steps, eps=eps, c_prime=c_prime)
        )
        self.gen = torch.Generator().manual_seed(seed)
        self.cauchy_steps = 0
        self.steps = 0

    def step(self, closure):
        out = closure()
        loss = out[0] if isinstance(out, tuple) else out
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.requires_grad]
            rho, l = group["rho"], group["l"]  # noqa: E741
            g = torch.autograd.grad(loss, ps, create_graph=True)

            def hvp(vs, g=g, ps=ps):
                return torch.autograd.grad(g, ps, grad_outputs=vs, retain_graph=True)

            gd = [t.detach() for t in g]
            gnorm = math.sqrt(sum(float((t * t).sum()) for t in gd))
            if gnorm >= l**2 / rho:
                Hg = hvp(gd)
                a = sum(float((u * v).sum()) for u, v in zip(gd, Hg)) / (rho * gnorm**2)
                rc = -a + math.sqrt(a * a + 2 * gnorm / rho)
                delta = [-rc * t / gnorm for t in gd]
                self.cauchy_steps += 1
            else:
                sigma = group["c_prime"] * math.sqrt(group["eps"] * rho) / l
                eta = 1.0 / (20 * l)
                gt = [t + sigma * torch.rand(t.shape, generator=self.gen).to(t) for t in gd]
                delta = [torch.zeros_like(t) for t in gd]
                for _ in range(group["inner_steps"]):
                    Hd = hvp(delta)
                    if math.sqrt(sum(float((h * h).sum()) for h in Hd)) > 200:
                        break
                    dn = math.sqrt(sum(float((d * d).sum()) for d in delta))
                    delta = [d - eta * (a + h + rho / 2 * dn * d) for d, a, h in zip(delta, gt, Hd)]
            with torch.no_grad():
                for p, d in zip(ps, delta):
                    p.add_(d)
        self.steps += 1
        return loss.detach()


# -- segmentation data ---------------------------------------------------------------------
def ellipse_segmentation(n: int, size: int = 32, *, seed: int = 0):
    """``(images, masks)``: ``(n, 1, size, size)`` float32 images in [0, 1] and ``(n, size,
    size)`` int64 masks (1 inside the ellipse).

    Each image is a head-like scene as in fetal ultrasound: a random ellipse (centre in the
    middle 40 % of the frame, semi-axes 18-35 % of the side, aspect 0.6-0.95, any angle) whose
    outline is a bright ring, partly lost in an acoustic shadow (a random quarter to half of
    the ring dimmed), a slightly brighter interior, multiplicative speckle (exponential
    intensity, the fully developed speckle of ultrasound) smoothed over about a pixel, and the
    study's min-max normalization. The mask is the filled ellipse, as the study filled HC18's
    outline annotations.
    """
    g = torch.Generator().manual_seed(seed)

    def u(lo, hi, shape=(n,)):
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)

    c = torch.arange(size, dtype=torch.float64) + 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    cx, cy = u(0.3, 0.7) * size, u(0.3, 0.7) * size
    a = u(0.18, 0.35) * size
    b = a * u(0.6, 0.95)
    th = u(0.0, math.pi)
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    ct, st = torch.cos(th)[:, None, None], torch.sin(th)[:, None, None]
    xr, yr = ct * dx + st * dy, -st * dx + ct * dy
    r = torch.sqrt((xr / a[:, None, None]) ** 2 + (yr / b[:, None, None]) ** 2)
    masks = (r <= 1.0).to(torch.int64)
    ring = torch.exp(-(((r - 1.0) * a[:, None, None] / 1.2) ** 2))
    phi = torch.atan2(yr, xr)
    start, width = u(-math.pi, math.pi), u(0.5 * math.pi, math.pi)
    inside_shadow = torch.remainder(phi - start[:, None, None], 2 * math.pi) < width[:, None, None]
    ring = torch.where(inside_shadow, 0.25 * ring, ring)
    clean = 0.15 + 0.12 * masks + 0.75 * ring
    speckle = -torch.log(torch.rand((n, size, size), generator=g, dtype=torch.float64))
    img = F.avg_pool2d((clean * speckle)[:, None], 3, stride=1, padding=1, count_include_pad=False)
    lo = img.amin(dim=(-2, -1), keepdim=True)
    hi = img.amax(dim=(-2, -1), keepdim=True)
    img = (img - lo) / (hi - lo)
    return img.to(torch.float32), masks


def hc18(root: str | os.PathLike, size: int = 256, limit: int | None = None):
    """HC18's training set from ``root`` (the ``training_set`` folder of the challenge's
    download: ``NNN_HC.png`` and ``NNN_HC_Annotation.png``), each image resized to ``size``
    (bilinear) and min-max normalized, each outline annotation filled and resized (nearest).
    The study resampled to 0.35 mm pixels and cropped to 256 x 256 with SimpleITK; this
    resizes the whole frame instead."""
    from PIL import Image
    from scipy.ndimage import binary_fill_holes

    root = Path(root)
    files = sorted(p for p in root.glob("*_HC.png"))
    if limit is not None:
        files = files[:limit]
    if not files:
        raise FileNotFoundError(f"no *_HC.png images under {root}")
    imgs, masks = [], []
    for f in files:
        im = np.asarray(Image.open(f).convert("L").resize((size, size), Image.BILINEAR), float)
        ann = np.asarray(Image.open(f.with_name(f.stem + "_Annotation.png")).convert("L")) > 0
        filled = binary_fill_holes(ann)
        m = Image.fromarray(filled.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)
        imgs.append((im - im.min()) / max(im.max() - im.min(), 1e-12))
        masks.append(np.asarray(m) > 0)
    X = torch.tensor(np.stack(imgs), dtype=torch.float32)[:, None]
    return X, torch.tensor(np.stack(masks), dtype=torch.int64)


# -- a small U-Net -------------------------------------------------------------------------
def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class UNet(nn.Module):
    """Two-level U-Net (Ronneberger et al. 2015): two convolution blocks down (each halving
    the resolution), a bottleneck, two up (transposed convolutions, skip connections), a 1x1
    head with ``classes`` logits per pixel. ``width`` channels at the top level, doubled per
    level. The study's U-Net had five levels of 64-1024 channels."""

    def __init__(self, width: int = 8, classes: int = 2):
        super().__init__()
        w = width
        self.down1, self.down2 = _block(1, w), _block(w, 2 * w)
        self.bottom = _block(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _block(2 * w, w)
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(F.max_pool2d(d1, 2))
        z = self.bottom(F.max_pool2d(d2, 2))
        u2 = self.dec2(torch.cat([self.up2(z), d2], 1))
        u1 = self.dec1(torch.cat([self.up1(u2), d1], 1))
        return self.head(u1)
