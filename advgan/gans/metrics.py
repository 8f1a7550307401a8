"""GAN metrics: Fréchet distance in a classifier's feature space, mode coverage, the optimal discriminator.

- :func:`frechet_distance` between two feature sets (FID's formula); :func:`classifier_features` gives the
  penultimate-layer features of a classifier trained here (offline: no Inception download), and
  :func:`classifier_frechet_distance` chains the two. Values are comparable only for the same classifier.
- :func:`mode_coverage`: the rule of VEEGAN / PacGAN for mixtures of Gaussians. A generated sample is
  *high quality* when its Euclidean distance to the nearest mode centre is at most ``3σ``; a mode is
  *captured* when at least ``min_count`` (default 1, PacGAN's rule) high-quality samples are nearest
  to it. PacGAN also reports the reverse KL between the generated and the true mode histograms
  (computed here over high-quality samples, uniform true weights).
- :func:`optimal_discriminator`: D*(x) = p_data(x) / (p_data(x) + p_g(x)) (Goodfellow et al. 2014, Prop. 1).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

Density = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------- Fréchet distance
def _as_2d_float64(f: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    a = f.detach().cpu().double().numpy() if isinstance(f, torch.Tensor) else np.asarray(f, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a (N, D) feature matrix, got shape {a.shape}.")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows to estimate a covariance, got {a.shape[0]}.")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf.")
    return a


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """‖μa − μb‖² + tr(Ca + Cb − 2 (Ca Cb)^½) between Gaussians fitted to two (N, D) feature sets.

    tr((Ca Cb)^½) is computed as tr((Ca^½ Cb Ca^½)^½) with symmetric eigen-decompositions (stable, real).
    """
    a, b = _as_2d_float64(feats_a, "feats_a"), _as_2d_float64(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    sa = _sqrt_psd(ca)
    eig = np.linalg.eigvalsh(sa @ cb @ sa)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt)
    return max(d, 0.0)


def _last_linear(model: nn.Module) -> nn.Linear:
    inner = getattr(model, "module", model)
    get = getattr(inner, "get_classifier", None)       # timm models
    if callable(get):
        head = get()
        if isinstance(head, nn.Linear):
            return head
    linears = [m for m in inner.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the classifier has no nn.Linear layer; cannot take penultimate features.")
    return linears[-1]


@torch.no_grad()
def classifier_features(clf: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Penultimate features (the input of the last Linear layer) of ``clf`` on ``images`` (N, C, H, W) in [0, 1].

    ``clf`` is an ``attacks.Classifier`` (or any module ending in a Linear head). Its mode and weights are
    left unchanged; it runs in eval mode.
    """
    from attacks.checks import check_images

    if isinstance(images, torch.Tensor) and images.dim() == 4 and images.shape[0] == 0:
        raise ValueError("images is empty.")
    images = check_images(images, name="images")
    head = _last_linear(clf)
    feats: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach().flatten(1).float().cpu()))
    was = clf.training
    clf.eval()
    dev = next(clf.parameters()).device
    try:
        for i in range(0, images.shape[0], batch_size):
            clf(images[i:i + batch_size].to(dev))
    finally:
        hook.remove()
        clf.train(was)
    return torch.cat(feats)


def classifier_frechet_distance(clf: nn.Module, images_a: torch.Tensor, images_b: torch.Tensor, batch_size: int = 256) -> float:
    """Fréchet distance between two image sets in ``clf``'s penultimate feature space."""
    return frechet_distance(classifier_features(clf, images_a, batch_size), classifier_features(clf, images_b, batch_size))


# ---------------------------------------------------------------------- mode coverage
def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, std: float, *, n_std: float = 3.0,
                  min_count: int = 1) -> dict[str, float | int | list[int]]:
    """Modes captured and fraction of high-quality samples (the VEEGAN / PacGAN rule; see the module doc).

    Returns ``modes_captured`` (int), ``num_modes``, ``high_quality`` (fraction in [0, 1]),
    ``counts`` (high-quality samples per mode) and ``reverse_kl`` (KL(generated ‖ uniform) of the
    high-quality mode histogram; inf when there is no high-quality sample).
    """
    s = torch.as_tensor(samples).detach().float().cpu()
    m = torch.as_tensor(modes).detach().float().cpu()
    if s.dim() != 2 or m.dim() != 2 or s.shape[1] != m.shape[1]:
        raise ValueError(f"samples (N, D) and modes (K, D) must share D; got {tuple(s.shape)} and {tuple(m.shape)}.")
    if s.shape[0] == 0:
        raise ValueError("samples is empty.")
    if not (isinstance(std, (int, float)) and std > 0):
        raise ValueError(f"std must be a positive number, got {std!r}.")
    if not torch.isfinite(s).all():
        raise ValueError("samples contain NaN or Inf (did training diverge?).")
    dist = torch.cdist(s, m)
    dmin, nearest = dist.min(1)
    hq = dmin <= n_std * std
    counts = torch.bincount(nearest[hq], minlength=m.shape[0])
    n_hq = int(hq.sum())
    if n_hq:
        p = counts.double() / n_hq
        nz = p > 0
        rkl = float((p[nz] * torch.log(p[nz] * m.shape[0])).sum())
    else:
        rkl = math.inf
    return {"modes_captured": int((counts >= min_count).sum()), "num_modes": int(m.shape[0]),
            "high_quality": n_hq / s.shape[0], "counts": counts.tolist(), "reverse_kl": rkl}


# ---------------------------------------------------------------------- optimal discriminator
def gaussian_pdf(mean: float, std: float) -> Density:
    """Density of N(mean, std²) in 1-D as a callable on tensors."""
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}.")
    c = 1.0 / (std * math.sqrt(2 * math.pi))
    return lambda x: c * torch.exp(-0.5 * ((torch.as_tensor(x, dtype=torch.float64) - mean) / std) ** 2)


def _density(p: Density | Sequence[float], name: str) -> Density:
    if callable(p):
        return p
    if isinstance(p, (tuple, list)) and len(p) == 2:
        return gaussian_pdf(float(p[0]), float(p[1]))
    raise TypeError(f"{name} must be a density callable or a 1-D Gaussian (mean, std), got {p!r}.")


def optimal_discriminator(p_data: Density | Sequence[float], p_g: Density | Sequence[float]) -> Density:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)) for densities given as callables or as 1-D Gaussians (mean, std).

    Where both densities vanish D* is undefined; this returns 0.5 there.
    """
    pd, pg = _density(p_data, "p_data"), _density(p_g, "p_g")

    def d_star(x: torch.Tensor) -> torch.Tensor:
        a = torch.as_tensor(pd(x), dtype=torch.float64)
        b = torch.as_tensor(pg(x), dtype=torch.float64)
        s = a + b
        return torch.where(s > 0, a / torch.where(s > 0, s, torch.ones_like(s)), torch.full_like(s, 0.5))

    return d_star


def game_value_at_optimum(p_data: Density | Sequence[float], p_g: Density | Sequence[float], grid: torch.Tensor) -> float:
    """V(D*, G) = E_pdata log D* + E_pg log(1 − D*) by numerical integration on a uniform 1-D ``grid``
    (= −log 4 + 2·JSD(p_data ‖ p_g); exactly −log 4 when p_g = p_data)."""
    pd, pg = _density(p_data, "p_data"), _density(p_g, "p_g")
    x = torch.as_tensor(grid, dtype=torch.float64).flatten()
    if x.numel() < 3:
        raise ValueError("grid needs at least 3 points.")
    d = optimal_discriminator(pd, pg)(x).clamp(1e-300, 1 - 1e-16)
    f = pd(x) * torch.log(d) + pg(x) * torch.log1p(-d)
    return float(torch.trapezoid(f, x))
