"""Plot accuracy vs budget (forward passes) for several methods into a PNG (matplotlib, Agg).

Each method gets one colour: a solid line for strict accuracy (`\\boxed{}` answers) with its 95%
Wilson band, and a dashed line for lenient accuracy ("the answer is N", the last number).
"""

from __future__ import annotations

from pathlib import Path

from plait.eval.curves import BudgetTable, wilson
from plait.outputs import save_figure


def plot_budget_curves(table: BudgetTable, path: str | Path, title: str = "") -> Path:
    """Strict (solid, 95% Wilson band) and lenient (dashed) accuracy per method; x = budget (log2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, row in table.cells.items():
        budgets = sorted(row)
        acc = [100 * row[b].accuracy for b in budgets]
        lo_hi = [wilson(row[b].correct, row[b].total) for b in budgets]
        n = row[budgets[0]].total
        (line,) = ax.plot(budgets, acc, marker="o", label=f"{method}, strict (n={n})")
        lenient = [100 * row[b].accuracy_lenient for b in budgets]
        ax.plot(budgets, lenient, marker="x", linestyle="--", color=line.get_color(),
                label=f"{method}, lenient")  # fmt: skip
        ax.fill_between(
            budgets, [100 * lo for lo, _ in lo_hi], [100 * hi for _, hi in lo_hi], alpha=0.12
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(table.budgets, [str(b) for b in table.budgets])
    ax.set_xlabel("budget (sequential forward passes)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path)
    plt.close(fig)
    return path
