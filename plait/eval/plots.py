"""Plot accuracy vs budget (forward passes) for several methods into a PNG (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from plait.eval.curves import BudgetTable, wilson


def plot_budget_curves(table: BudgetTable, path: str | Path, title: str = "") -> Path:
    """One line per method with 95% Wilson bands; x = budget in forward passes (log2 scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, row in table.cells.items():
        budgets = sorted(row)
        acc = [100 * row[b].accuracy for b in budgets]
        lo_hi = [wilson(row[b].correct, row[b].total) for b in budgets]
        ax.plot(budgets, acc, marker="o", label=f"{method} (n={row[budgets[0]].total})")
        ax.fill_between(
            budgets, [100 * lo for lo, _ in lo_hi], [100 * hi for _, hi in lo_hi], alpha=0.12
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(table.budgets, [str(b) for b in table.budgets])
    ax.set_xlabel("budget (sequential forward passes)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
