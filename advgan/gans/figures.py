"""PNG figures of the GAN core: image grids, 2-D point clouds, labelled side-by-side rows (atomic writes)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch


def _atomic_png(path: str | Path, save) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    save(tmp)
    tmp.replace(path)
    return path


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, padding: int = 2) -> Path:
    """Save images (N, C, H, W) in [0, 1] as one grid PNG (``nrow`` images per row, default ~sqrt(N))."""
    from torchvision.utils import save_image

    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}.")
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    x = images.detach().float().cpu().clamp(0, 1)
    return _atomic_png(path, lambda p: save_image(x, str(p), nrow=nrow, padding=padding, pad_value=1.0))


def save_points(points: torch.Tensor, path: str | Path, *, modes: torch.Tensor | None = None, std: float | None = None,
                title: str = "", real: torch.Tensor | None = None) -> Path:
    """Scatter plot of 2-D samples (and, if given, real samples, the modes and their 3σ circles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = points.detach().float().cpu().reshape(points.shape[0], -1)
    if pts.shape[1] == 1:
        pts = torch.cat([pts, torch.zeros_like(pts)], 1)
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    if real is not None:
        r = real.detach().float().cpu().reshape(real.shape[0], -1).numpy()
        ax.scatter(r[:, 0], r[:, 1] if r.shape[1] > 1 else 0 * r[:, 0], s=2, c="tab:gray", alpha=0.3, label="real")
    xy = pts.numpy()
    ax.scatter(xy[:, 0], xy[:, 1], s=2, c="tab:blue", alpha=0.5, label="generated")
    if modes is not None:
        m = modes.detach().float().cpu().numpy()
        ax.scatter(m[:, 0], m[:, 1], marker="x", c="tab:red", s=30, label="modes")
        if std:
            for c in m:
                ax.add_patch(plt.Circle((float(c[0]), float(c[1])), 3 * std, fill=False, color="tab:red", lw=0.6))
        lo, hi = float(m.min()) - 1.0, float(m.max()) + 1.0
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = _atomic_png(path, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return out


def save_rows(rows: Mapping[str, torch.Tensor], path: str | Path, *, title: str = "") -> Path:
    """One labelled row per entry (each (N, C, H, W) in [0, 1], same N): e.g. input / target / outputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: Sequence[str] = list(rows)
    n = min(int(t.shape[0]) for t in rows.values())
    fig, axes = plt.subplots(len(names), n, figsize=(0.9 * n + 1.2, 0.95 * len(names) + 0.4), squeeze=False)
    for r, name in enumerate(names):
        imgs = rows[name].detach().float().cpu().clamp(0, 1)
        for c in range(n):
            ax = axes[r][c]
            im = imgs[c].numpy()
            ax.imshow(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0), cmap="gray" if im.shape[0] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = _atomic_png(path, lambda p: fig.savefig(p, dpi=100))
    plt.close(fig)
    return out
