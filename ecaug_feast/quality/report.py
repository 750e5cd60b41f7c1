"""Quality report of a run: Markdown + PNG plots (matplotlib, Agg backend), written into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd


def _plots(real: pd.DataFrame, synth: pd.DataFrame, discrete: Sequence[str], history: list[dict[str, Any]],
           out: Path) -> list[str]:
    import matplotlib  # heavy, and the backend is chosen before pyplot loads: only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    cols = list(real.columns)
    # 1. Per-column distributions.
    ncol = 4
    nrow = int(np.ceil(len(cols) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow))
    for ax, c in zip(np.ravel(axes), cols):
        if c in discrete:
            top = real[c].value_counts().index[:15]
            pr = real[c].value_counts(normalize=True).reindex(top).fillna(0)
            ps = synth[c].value_counts(normalize=True).reindex(top).fillna(0)
            x = np.arange(len(top))
            ax.bar(x - 0.2, pr.to_numpy(), 0.4, label="real")
            ax.bar(x + 0.2, ps.to_numpy(), 0.4, label="synthetic")
            ax.set_xticks(x, [str(t) for t in top], rotation=90, fontsize=6)
            ax.set_title(f"{c} (top 15)", fontsize=9)
        else:
            r, s = real[c].astype(float).dropna(), synth[c].astype(float).dropna()
            bins = np.unique(np.quantile(np.concatenate([r, s]), np.linspace(0, 1, 31)))
            ax.hist(r, bins=bins, alpha=0.5, density=True, label="real")
            ax.hist(s, bins=bins, alpha=0.5, density=True, label="synthetic")
            ax.set_title(c, fontsize=9)
    for ax in np.ravel(axes)[len(cols):]:
        ax.axis("off")
    np.ravel(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "columns.png", dpi=80)
    plt.close(fig)
    files.append("plots/columns.png")
    # 2. Correlation heatmaps (categoricals by frequency in the real data, i.e. popularity).
    def num(df: pd.DataFrame) -> pd.DataFrame:
        d = {}
        for c in cols:
            d[c] = df[c].map(real[c].value_counts()).fillna(0).astype(float) if c in discrete else df[c].astype(float)
        return pd.DataFrame(d)

    cr, cs = num(real).corr(method="spearman").fillna(0), num(synth).corr(method="spearman").fillna(0)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    for ax, m, t in zip(axes, (cr, cs, (cr - cs).abs()), ("real", "synthetic", "|difference|")):
        im = ax.imshow(m.to_numpy(), vmin=-1 if t != "|difference|" else 0, vmax=1, cmap="coolwarm" if t != "|difference|" else "viridis")
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        ax.set_yticks(range(len(cols)), cols, fontsize=7)
        ax.set_title(f"Spearman correlation: {t}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out / "correlations.png", dpi=80)
    plt.close(fig)
    files.append("plots/correlations.png")
    # 3. Label distribution.
    if "label" in real.columns:
        fig, ax = plt.subplots(figsize=(4, 3))
        pr = real["label"].value_counts(normalize=True).sort_index()
        ps = synth["label"].value_counts(normalize=True).reindex(pr.index).fillna(0)
        x = np.arange(len(pr))
        ax.bar(x - 0.2, pr.to_numpy(), 0.4, label="real")
        ax.bar(x + 0.2, ps.to_numpy(), 0.4, label="synthetic (accepted)")
        ax.set_xticks(x, [str(i) for i in pr.index])
        ax.set_title("label distribution")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "labels.png", dpi=80)
        plt.close(fig)
        files.append("plots/labels.png")
    # 4. GAN fidelity curve (what model selection used) and the WGAN losses (what it did not).
    if history:
        h = pd.DataFrame(history)
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        for k in ("fidelity", "shapes", "trends"):
            ax[0].plot(h["step"], h[k], label=k)
        ax[0].set_title("GAN fidelity on a held sample (model selection)")
        ax[0].set_xlabel("step")
        ax[0].legend(fontsize=7)
        ax[1].plot(h["step"], h["loss_d"], label="critic")
        ax[1].plot(h["step"], h["loss_g"], label="generator")
        ax[1].set_title("WGAN-GP losses (not used for selection)")
        ax[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "fidelity.png", dpi=80)
        plt.close(fig)
        files.append("plots/fidelity.png")
    return files


def write_report(folder: str | Path, run_id: str, real: pd.DataFrame, synth_accepted: pd.DataFrame,
                 discrete: Sequence[str], metrics: dict[str, Any], history: list[dict[str, Any]] | None = None) -> Path:
    """``report.md`` + ``plots/*.png`` in ``folder``. ``real``/``synth_accepted``: flat tables."""
    folder = Path(folder)
    files = _plots(real, synth_accepted, discrete, history or [], folder / "plots") if len(synth_accepted) else []
    f = lambda v: "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{v:.3f}" if isinstance(v, float) else str(v))
    lab = metrics.get("labeler", {}) or {}
    lines = [
        f"# Synthetic run `{run_id}`", "",
        f"Gate: **{metrics.get('gate')}**" + (f" — {'; '.join(metrics.get('gate_reasons') or [])}" if metrics.get("gate_reasons") else ""), "",
        "| metric | value |", "|---|---|",
    ]
    for k in ("rows_generated", "rows_accepted", "column_shapes", "pair_trends", "c2st_auc", "privacy_dropped",
              "exact_copies", "outliers", "low_confidence_dropped", "label_prior_dropped", "label_agreement",
              "label_positive_share_real", "label_positive_share_synthetic", "segment", "segment_hit_rate",
              "fit_rows", "fit_seconds", "gan_fit_seconds", "gan_best_step", "sample_seconds"):
        if k in metrics:
            lines.append(f"| {k} | {f(metrics[k])} |")
    lines += ["", "C2ST AUC: 5-fold AUC of a gradient-boosted real-vs-synthetic classifier (0.5 = indistinguishable).",
              "Column shapes: 1-KS / 1-TV per column; pair trends: correlation / contingency similarity.", ""]
    if metrics.get("column_shapes_per_column"):
        lines += ["## Column shapes", "", "| column | score |", "|---|---|"]
        lines += [f"| {c} | {v:.3f} |" for c, v in metrics["column_shapes_per_column"].items()]
        lines.append("")
    if lab:
        lines += ["## Labeler", "",
                  f"KMeans k = {lab.get('k')} (best silhouette among {lab.get('silhouette')}), gradient-boosted classifier; "
                  f"posterior = 0.7 classifier + 0.3 cluster label distribution.", "",
                  f"On {lab.get('holdout_rows')} held-out real rows the labeler reproduces the true label "
                  f"{f(lab.get('agreement'))} of the time (classifier alone {f(lab.get('agreement_classifier'))}, clusters alone "
                  f"{f(lab.get('agreement_cluster'))}, majority class {f(lab.get('majority_baseline'))}); on its confident rows "
                  f"({f(lab.get('confident_share'))} of them) {f(lab.get('agreement_confident'))}.", ""]
    for p in files:
        lines += [f"![{Path(p).stem}]({p})", ""]
    (folder / "report.md").write_text("\n".join(lines))
    return folder / "report.md"
