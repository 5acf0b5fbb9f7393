"""Evaluation reports a person reads: a summary, Markdown, JSON and a confusion-matrix picture.

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from .evaluation import EvaluationResult
from .files import PathLike, atomic_file, atomic_files

__all__ = ["summary_text", "markdown", "write_report", "report_files", "plot_confusion"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def summary_text(results: Sequence[EvaluationResult]) -> str:
    """A few lines per protocol: accuracy (mean ± std over seeds), ECE, weakest genres, top inputs."""
    lines = []
    for r in results:
        spread = f" ± {r.accuracy_std:.3f} over {len(r.accuracies)} seeds" if len(r.accuracies) > 1 else ""
        lines.append(f"{r.protocol}: accuracy {r.accuracy:.3f}{spread}; calibration error (ECE) {r.ece:.3f}")
        ci = r.intervals()
        (b_lo, b_hi), (l_lo, l_hi) = ci["balanced_accuracy"], ci["lenient_balanced_accuracy"]
        lines.append(f"  balanced accuracy {r.balanced_accuracy:.3f} [95% {b_lo:.3f}-{b_hi:.3f}] "
                     f"(lenient {r.lenient_balanced_accuracy:.3f} [{l_lo:.3f}-{l_hi:.3f}]); "
                     f"mean confidence when wrong {r.mean_confidence_wrong:.3f}")
        scored = {g: m for g, m in r.per_genre().items() if m["support"]}
        lines.append("  recall: " + ", ".join(f"{g} {m['recall']:.2f}" for g, m in scored.items()))
        worst = sorted(scored.items(), key=lambda kv: kv[1]["f1"])[:3]
        lines.append("  weakest genres (F1): " + ", ".join(f"{g} {m['f1']:.2f}" for g, m in worst))
        if r.importance:
            top = list(r.importance.items())[:5]
            lines.append("  inputs that matter most (accuracy drop when shuffled): "
                         + ", ".join(f"{k} {v:.3f}" for k, v in top))
    return "\n".join(lines)


def markdown(results: Sequence[EvaluationResult], *, title: str, command: str, notes: str = "") -> str:
    """The report as Markdown."""
    out = [f"# {title}", "", f"Command: `{command}`", ""]
    if notes:
        out += [notes, ""]
    out += ["| protocol | accuracy (mean ± std) | seeds | balanced [95% interval] | lenient [95% interval] "
            "| confidence when wrong | ECE |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        ci = r.intervals()
        (b_lo, b_hi), (l_lo, l_hi) = ci["balanced_accuracy"], ci["lenient_balanced_accuracy"]
        out.append(f"| {r.protocol} | {r.accuracy:.3f} ± {r.accuracy_std:.3f} | {len(r.accuracies)} | "
                   f"{r.balanced_accuracy:.3f} [{b_lo:.3f}, {b_hi:.3f}] | "
                   f"{r.lenient_balanced_accuracy:.3f} [{l_lo:.3f}, {l_hi:.3f}] | {r.mean_confidence_wrong:.3f} | "
                   f"{r.ece:.3f} |")
    for r in results:
        out += ["", f"## {r.protocol}", "", "| genre | precision | recall | F1 | test examples |",
                "| --- | --- | --- | --- | --- |"]
        for g, m in r.per_genre().items():
            out.append(f"| {g} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
        cm = r.confusion()
        out += ["", "Confusion matrix (rows: true genre, columns: predicted; all seeds pooled):", "",
                "| | " + " | ".join(r.labels) + " |", "|" + " --- |" * (len(r.labels) + 1)]
        for g, row in zip(r.labels, cm):
            out.append(f"| **{g}** | " + " | ".join(str(int(v)) for v in row) + " |")
        if r.importance:
            out += ["", "Permutation importance by feature group (accuracy drop when the group is shuffled):", "",
                    "| group | drop |", "| --- | --- |"]
            out += [f"| {k} | {v:.3f} |" for k, v in r.importance.items()]
    return "\n".join(out) + "\n"


def plot_confusion(result: EvaluationResult, path: Path) -> None:
    """Save the row-normalised confusion matrix as a PNG."""
    with atomic_file(path, suffix=".png") as fh:
        _draw_confusion(result, fh)


def _draw_confusion(result: EvaluationResult, fh: BinaryIO) -> None:
    """The row-normalised confusion matrix as a PNG written to the open file ``fh``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = result.confusion().astype(float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(result.labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * n, 0.8 + 0.55 * n), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), result.labels, rotation=45, ha="right")
    ax.set_yticks(range(n), result.labels)
    ax.set_xlabel("predicted genre")
    ax.set_ylabel("true genre")
    ax.set_title(f"{result.protocol}: accuracy {result.accuracy:.3f}", fontsize=10)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    try:
        fig.savefig(fh, format="png")
    finally:
        plt.close(fig)


def report_files(results: Sequence[EvaluationResult], out_dir: PathLike) -> list[Path]:
    """The files :func:`write_report` writes into ``out_dir``: ``report.md``, ``report.json``, then the PNGs."""
    out = Path(out_dir)
    return [out / "report.md", out / "report.json", *(out / f"confusion-{_slug(r.protocol)}.png" for r in results)]


def write_report(
    results: Sequence[EvaluationResult], out_dir: PathLike, *, title: str, command: str, notes: str = ""
) -> list[Path]:
    """Write ``report.md``, ``report.json`` and one ``confusion-<protocol>.png`` per protocol into ``out_dir``.

    Every file is written to a temporary name first and renamed into place
    only when all are complete: when a write fails (a full disk), the
    previous files are left as they were and the folders this call created
    are removed again.
    """
    out = Path(out_dir)
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    paths = report_files(results, out)
    try:
        with atomic_files(paths) as (md, js, *pngs):
            md.write(markdown(results, title=title, command=command, notes=notes).encode())
            js.write((json.dumps({"title": title, "command": command,
                                  "results": [r.to_dict() for r in results]}, indent=2) + "\n").encode())
            for r, fh in zip(results, pngs):
                _draw_confusion(r, fh)
    except BaseException:
        for folder in created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return paths
