"""Writing the results: JSON, Markdown and a PNG chart of the ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._common import fmt_ratio

RESULTS = Path(__file__).resolve().parent / "results"

_GREEN, _RED, _GREY = "#2e7d32", "#c62828", "#9e9e9e"


def load(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _fmt(stats: dict[str, Any] | None, unit: str) -> str:
    if not stats:
        return "—"
    digits = 2 if unit in ("ms", "MiB", "x") else 1
    return (f"{stats['median']:,.{digits}f} [{stats['min']:,.{digits}f}-"
            f"{stats['max']:,.{digits}f}]")


def markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    out = [
        "# mizaic_processor benchmarks",
        "",
        f"Run {env['date']} with `python -m bench {' '.join(env['argv'])}`".rstrip() + ".",
        "",
        f"- Machine: {env['cpu_count']} logical cores ({env['physical_cores']} physical), "
        f"{env['memory_gib']} GiB RAM, {env['platform']}",
        f"- Python {env['python']}; Azurite {env['azurite']} (Node {env['node']}); "
        f"azure-storage-blob {env['azure-storage-blob']}; azure-core {env['azure-core']}; "
        f"cryptography {env['cryptography']}",
        f"- mizaic-processor {env['mizaic-processor']} at commit {env['git_commit']}"
        + (" (src/ modified since)" if env.get("src_modified_since_commit") else ""),
        f"- Repetitions: {doc['config']['reps']} (figures are median [min-max]; ratio = "
        "median ours / median baseline for throughput, baseline time / our time for "
        "latencies)" + (" — QUICK smoke run, small sizes" if doc["config"]["quick"] else ""),
        "- Azurite runs on the same machine as the client, so both compete for the cores.",
        "",
        "![ratios](ratios.png)" if doc.get("chart") else "",
        "",
        "| Scenario | Measure | Unit | Ours | Baseline | Ratio | Target | Met? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario in doc["scenarios"].values():
        if not scenario["lines"]:
            out.append(f"| {scenario['key']} | {scenario['title']} | | "
                       f"{scenario['status']} | | | | |")
        for line in scenario["lines"]:
            ratio = "—" if line["ratio"] is None else fmt_ratio(line["ratio"], line["met"])
            base = _fmt(line["baseline"], line["unit"])
            if line["baseline"]:
                base = f"{base} ({line['baseline_name']})"
            target = line["target"]["text"] if line["target"] else "—"
            out.append(
                f"| {line['scenario']} | {line['name']}"
                + (f" — {line['note']}" if line["note"] else "")
                + f" | {line['unit']} | {_fmt(line['ours'], line['unit'])} | {base} | {ratio} "
                f"| {target} | {line['verdict']} |"
            )
    out += ["", "## Notes", ""]
    for scenario in doc["scenarios"].values():
        run_at = scenario.get("run_at", "")
        commit = scenario.get("git_commit", "")
        out.append(f"- **{scenario['key']}** ({scenario['status']}, {scenario['seconds']} s"
                   + (f", run {run_at}" if run_at and run_at != env["date"] else "")
                   + (f", library at {commit}" if commit else "") + "): "
                   + ("; ".join(scenario["notes"]) or "—"))
    skipped = doc.get("not_run") or []
    if skipped:
        out += ["", "Missing from these results (never run, or failed before writing): "
                + ", ".join(skipped)]
    return "\n".join(out) + "\n"


def chart(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    higher: list[tuple[str, float, float | None, bool | None]] = []
    lower: list[tuple[str, float, str, bool | None]] = []
    for scenario in doc["scenarios"].values():
        for line in scenario["lines"]:
            label = f"{line['scenario']}: {line['name']}"
            label = label.replace("1024 MiB", "1 GiB")
            if len(label) > 50:
                label = label[:49] + "…"
            target = line["target"]
            if line["chart"] == "higher" and line["ratio"] is not None:
                higher.append((label, line["ratio"], target["value"] if target else None,
                               line["met"]))
            elif line["chart"] == "lower" and target:
                if target["on"] == "ours_max":
                    value = line["ours"]["max"]
                    shown = f"{value:.1f} {line['unit']} (worst rep) / {target['value']:g}"
                else:
                    value = line["ratio"]
                    shown = f"{value:.2f} / {target['value']:g}"
                lower.append((label, value / target["value"], shown, line["met"]))
    if not higher and not lower:
        return False
    rows = max(len(higher), 1) + max(len(lower), 1) + 4
    fig, axes = plt.subplots(
        2, 1, figsize=(13, 0.3 * rows + 1.5), layout="constrained",
        gridspec_kw={"height_ratios": [max(len(higher), 1) + 1, max(len(lower), 1) + 1]},
    )

    def colour(met: bool | None) -> str:
        return _GREY if met is None else (_GREEN if met else _RED)

    ax = axes[0]
    if higher:
        ys = range(len(higher))
        ax.barh(list(ys), [h[1] for h in higher], color=[colour(h[3]) for h in higher])
        for y, (_, value, target, met) in zip(ys, higher, strict=True):
            if target is not None:
                ax.plot([target, target], [y - 0.4, y + 0.4], color="black", linewidth=2)
            ax.text(value + 0.01, y, fmt_ratio(value, met), va="center", fontsize=7)
        ax.set_yticks(list(ys), [h[0] for h in higher], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="#555555", linestyle=":", linewidth=1)
        ax.set_xlim(0, max(1.1, max(h[1] for h in higher) * 1.1))
    ax.set_title("ours / baseline (higher is better; black tick = target; green met, red "
                 "missed, grey no target)", fontsize=9)
    ax.set_xlabel("ratio", fontsize=8)

    ax = axes[1]
    if lower:
        ys = range(len(lower))
        ax.barh(list(ys), [lo[1] for lo in lower], color=[colour(lo[3]) for lo in lower])
        for y, (_, value, shown, _) in zip(ys, lower, strict=True):
            ax.text(value + 0.01, y, shown, va="center", fontsize=7)
        ax.set_yticks(list(ys), [lo[0] for lo in lower], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=2)
        ax.set_xlim(0, max(1.6, max(lo[1] for lo in lower) * 1.5))
    ax.set_title("scaling and memory, as a fraction of the target (lower is better; "
                 "line = target)", fontsize=9)
    ax.set_xlabel("figure / target", fontsize=8)
    env = doc["environment"]
    fig.suptitle(
        f"mizaic_processor benchmarks — {env['date']} — {env['cpu_count']} cores, Python "
        f"{env['python']}, Azurite {env['azurite']}, azure-storage-blob "
        f"{env['azure-storage-blob']}" + (" — QUICK run" if doc["config"]["quick"] else ""),
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(doc: dict[str, Any], stem: str) -> dict[str, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": RESULTS / f"{stem}.json",
        "md": RESULTS / f"{stem}.md",
        "png": RESULTS / ("ratios.png" if stem == "latest" else f"{stem}-ratios.png"),
    }
    doc["chart"] = chart(doc, paths["png"])
    md = markdown(doc)
    if paths["png"].name != "ratios.png":
        md = md.replace("(ratios.png)", f"({paths['png'].name})")
    paths["json"].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    paths["md"].write_text(md)
    return paths
