"""Plots (matplotlib imported lazily, Agg): jobs completed vs time, loss vs time, runtime vs load."""

from __future__ import annotations

from pathlib import Path

from plait.outputs import save_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def jobs_vs_time(runs: dict[str, list[float]], path: str | Path, title: str = "") -> None:
    """runs: label -> sorted job completion times (seconds)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, done in runs.items():
        ts = sorted(done)
        ax.plot(ts, range(1, len(ts) + 1), label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("jobs completed")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def loss_vs_time(
    curves: dict[str, list[tuple[float, int, float]]], path: str | Path, title: str = ""
) -> None:
    """curves: scheme -> [(time, model, loss)]; one panel per model, one line per scheme."""
    plt = _plt()
    models = sorted({m for c in curves.values() for _, m, _ in c})
    fig, axes = plt.subplots(
        1, max(1, len(models)), figsize=(3.2 * max(1, len(models)), 3.2), squeeze=False
    )
    for k, m in enumerate(models):
        ax = axes[0][k]
        for label, c in curves.items():
            pts = [(t, loss) for t, mm, loss in c if mm == m]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
        ax.set_title(f"model {m}")
        ax.set_xlabel("time (s)")
        if k == 0:
            ax.set_ylabel("train loss")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def runtime_vs_load(
    points: list[tuple[str, float, float]], path: str | Path, title: str = ""
) -> None:
    """points: (scheme, load, runtime)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in sorted({p[0] for p in points}):
        xs = [(p[1], p[2]) for p in points if p[0] == name]
        ax.scatter([x[0] for x in xs], [x[1] for x in xs], s=10, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("normalized load")
    ax.set_ylabel("runtime (s)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
