"""Figures for reports (matplotlib Agg canvas, no pyplot; files written atomically).

``image_grid`` is the reusable picture of an attack: clean | perturbation (amplified) | adversarial,
each image titled with the model's prediction. ``attack_grid`` stacks several attacks under one
clean row; ``plot_eps_curves`` draws robust accuracy and attack success rate against the budget.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import atomic_write_bytes

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure(figsize: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas, without pyplot (never touches the user's global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _to_hwc(img: torch.Tensor) -> tuple[np.ndarray[Any, Any], str | None]:
    img = img.detach().float().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    return img.permute(1, 2, 0).numpy(), None


def _perturbation(clean: torch.Tensor, adv: torch.Tensor, amplify: float | None) -> torch.Tensor:
    """Map a perturbation to [0, 1] around 0.5; ``amplify=None`` scales each image to its own max."""
    d = (adv.detach().float().cpu() - clean.detach().float().cpu())
    if amplify is None:
        scale = d.flatten(1).abs().amax(1).clamp(min=1e-12).view(-1, *([1] * (d.dim() - 1)))
        return (0.5 + 0.5 * d / scale).clamp(0, 1)
    return (0.5 + amplify * d).clamp(0, 1)


def _check_pair(clean: torch.Tensor, adv: torch.Tensor) -> None:
    if not isinstance(clean, torch.Tensor) or not isinstance(adv, torch.Tensor) or clean.dim() != 4:
        raise ValueError("clean and adv must be image tensors of shape (N, C, H, W).")
    if clean.shape != adv.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and adv {tuple(adv.shape)} must have the same shape.")


def _labels(p: Sequence[int] | torch.Tensor | None, n: int) -> list[str]:
    if p is None:
        return [""] * n
    vals = p.tolist() if isinstance(p, torch.Tensor) else list(p)
    return [str(v) for v in vals[:n]]


def attack_grid(clean: torch.Tensor, advs: Mapping[str, torch.Tensor], preds_clean: Sequence[int] | torch.Tensor | None,
                preds_adv: Mapping[str, Sequence[int] | torch.Tensor] | None, path: str | Path, *,
                amplify: float | None = None, max_images: int = 8, label_names: Sequence[str] | None = None) -> Path:
    """One row of clean images, then per attack a row of amplified perturbations and a row of adversarials.

    Titles show the predicted label (``label_names`` maps indices to names). ``amplify=None`` scales
    each perturbation to its own maximum; a number multiplies it (e.g. ``amplify=1 / (2 * eps)``).
    """
    n = min(clean.shape[0], max_images)
    if n == 0 or not advs:
        raise ValueError("attack_grid needs at least one image and one attack.")
    for a in advs.values():
        _check_pair(clean, a)
    rows = 1 + 2 * len(advs)
    fig = _figure((1.3 * n + 1.2, 1.45 * rows))
    axes = fig.subplots(rows, n, squeeze=False)

    def name_of(i: str) -> str:
        return label_names[int(i)] if label_names else i

    def show(ax: Axes, img: torch.Tensor, title: str, color: str = "black") -> None:
        arr, cmap = _to_hwc(img)
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=8, color=color)

    pc = _labels(preds_clean, n)
    for j in range(n):
        show(axes[0, j], clean[j], f"pred {name_of(pc[j]) if pc[j] else ''}")
    axes[0, 0].set_ylabel("clean", fontsize=8)
    for k, (name, adv) in enumerate(advs.items()):
        pert = _perturbation(clean[:n], adv[:n], amplify)
        pa = _labels(preds_adv.get(name) if preds_adv else None, n)
        for j in range(n):
            show(axes[1 + 2 * k, j], pert[j], "")
            changed = pa[j] and pc[j] and pa[j] != pc[j]
            show(axes[2 + 2 * k, j], adv[j], f"pred {name_of(pa[j]) if pa[j] else ''}", "red" if changed else "black")
        axes[1 + 2 * k, 0].set_ylabel(f"{name}\nperturbation", fontsize=8)
        axes[2 + 2 * k, 0].set_ylabel(f"{name}\nadversarial", fontsize=8)
    return _save(fig, path)


def image_grid(clean: torch.Tensor, adv: torch.Tensor, preds_clean: Sequence[int] | torch.Tensor | None,
               preds_adv: Sequence[int] | torch.Tensor | None, path: str | Path, *, amplify: float | None = None,
               max_images: int = 8, title: str = "attack", label_names: Sequence[str] | None = None) -> Path:
    """Rows: clean | perturbation (amplified) | adversarial, titled with predicted labels; writes a PNG."""
    return attack_grid(clean, {title: adv}, preds_clean, {title: preds_adv} if preds_adv is not None else None,
                       path, amplify=amplify, max_images=max_images, label_names=label_names)


def plot_eps_curves(curves: Mapping[str, Sequence[tuple[float, float, float]]], path: str | Path, *,
                    clean_accuracy: float | None = None, norm: str | None = None,
                    highlight: Sequence[str] = ()) -> Path:
    """Robust accuracy and attack success rate vs eps; ``curves[name] = [(eps, robust_acc, asr), ...]``.

    Curves named in ``highlight`` (e.g. the worst case) are drawn first, thick and black.
    """
    if not curves:
        raise ValueError("plot_eps_curves needs at least one curve.")
    fig = _figure((10, 3.8))
    a1, a2 = fig.subplots(1, 2)
    order = [n for n in curves if n in highlight] + [n for n in curves if n not in highlight]
    for name in order:
        pts = sorted(curves[name])
        eps = [p[0] for p in pts]
        style: dict[str, Any] = {"color": "black", "lw": 2.5, "zorder": 3} if name in highlight else {}
        a1.plot(eps, [100 * p[1] for p in pts], marker="o", label=name, **style)
        a2.plot(eps, [100 * p[2] for p in pts], marker="o", label=name, **style)
    if clean_accuracy is not None:
        a1.axhline(100 * clean_accuracy, color="gray", ls="--", lw=1, label="clean")
    xl = f"eps ({norm})" if norm else "eps"
    for ax, yl in ((a1, "robust accuracy (%)"), (a2, "attack success rate (%)")):
        ax.set_xlabel(xl), ax.set_ylabel(yl), ax.set_ylim(-2, 102), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    return _save(fig, path)


def plot_corruption_heatmap(accuracy: Mapping[str, Mapping[int, float]], path: str | Path, *,
                            clean_accuracy: float | None = None) -> Path:
    """Accuracy (%) as a heatmap: one row per corruption, one column per severity, each cell annotated."""
    names = list(accuracy)
    if not names:
        raise ValueError("plot_corruption_heatmap needs at least one corruption.")
    sevs = sorted({s for row in accuracy.values() for s in row})
    grid = [[100 * accuracy[c].get(s, float("nan")) for s in sevs] for c in names]
    fig = _figure((1.2 + 0.8 * len(sevs), 0.9 + 0.34 * len(names)))
    ax = fig.subplots()
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for r, row in enumerate(grid):
        for c, v in enumerate(row):
            ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
    ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("severity")
    title = "accuracy under corruption (%)"
    if clean_accuracy is not None:
        title += f"; clean {100 * clean_accuracy:.1f}"
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    return _save(fig, path)


__all__ = ["attack_grid", "image_grid", "plot_corruption_heatmap", "plot_eps_curves"]
