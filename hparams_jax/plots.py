"""Matplotlib figures saved as PNG: schedules (Smith 2018, Fig. 8-style policy plots).

Uses the non-interactive Agg backend so it works on machines without a screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_schedules(curves: Mapping[str, np.ndarray], path: str | Path, *,
                   title: str = "Hyper-parameter schedules") -> Path:
    """One panel per hyper-parameter (`learning_rate`, `momentum`, `weight_decay`, ...) against
    the training step; `curves` maps a name to its values at steps 0, 1, 2, ..."""
    fig, axes = plt.subplots(len(curves), 1, figsize=(7, 2.4 * len(curves)), sharex=True,
                             squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], curves.items()):
        values = np.asarray(values)
        ax.plot(np.arange(len(values)), values)
        ax.set_ylabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("training step")
    return _save(fig, path)
