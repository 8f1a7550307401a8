"""Training history: per-step losses and per-epoch metrics, saved as JSON and plotted as PNG."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attacks.checkpoint import load_json, save_json


@dataclass
class History:
    """``steps``: one dict per generator step (``step``, ``epoch`` and ``player/loss`` floats).
    ``epochs``: one dict per finished epoch (validation metrics, seconds)."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    def last(self, key: str, default: float | None = None) -> float | None:
        for rec in reversed(self.steps):
            if key in rec:
                return rec[key]
        for rec in reversed(self.epochs):
            if key in rec:
                return rec[key]
        return default

    def series(self, key: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for rec in self.steps:
            if key in rec:
                xs.append(rec["step"])
                ys.append(rec[key])
        return xs, ys

    def keys(self) -> list[str]:
        ks: dict[str, None] = {}
        for rec in self.steps:
            for k in rec:
                if k not in ("step", "epoch"):
                    ks[k] = None
        return list(ks)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "epochs": self.epochs}

    def save(self, path: str | Path) -> Path:
        return save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> History:
        d = load_json(path, what="history")
        return cls(list(d.get("steps", [])), list(d.get("epochs", [])))

    def plot(self, path: str | Path, *, keys: list[str] | None = None, title: str = "training losses", smooth: int = 0) -> Path:
        """Loss curves (one panel per player) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = keys or self.keys()
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(k.split("/", 1)[0], []).append(k)
        n = max(1, len(groups))
        fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
        smooth = smooth or max(1, len(self.steps) // 100)
        for ax, (grp, ks) in zip(axes[0], groups.items()):
            for k in ks:
                xs, ys = self.series(k)
                if smooth > 1 and len(ys) > smooth:
                    ys = [sum(ys[max(0, i - smooth + 1): i + 1]) / len(ys[max(0, i - smooth + 1): i + 1]) for i in range(len(ys))]
                ax.plot(xs, ys, label=k.split("/", 1)[-1], lw=1.2)
            ax.set_title(grp)
            ax.set_xlabel("generator step")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        return path
