"""The synthesis report: yield per stage, why candidates were dropped, tools and steps histograms.

:func:`build_report` turns the per-problem states into a :class:`SynthReport`; :func:`write_report`
writes ``report.json``, ``report.md`` and (when matplotlib is installed) ``report.png``, each atomically.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mcp_gyms.files import atomic_write

from .state import STAGE_TITLES, ProblemState

__all__ = ["StageYield", "SynthReport", "build_report", "write_report"]

_STEP_BINS = (10, 20, 40, 80, 160, 257)


class StageYield(BaseModel):
    stage: str
    title: str
    entered: int = 0
    passed: int = 0
    dropped: int = 0
    reasons: dict[str, int] = Field(default_factory=dict, description="drop code -> count")


class ProblemRow(BaseModel):
    problem_id: str
    gym_id: str
    verdict: str
    stage: str | None = None
    code: str = ""
    reason: str = ""
    tools: int | None = None
    tasks: int | None = None


class SynthReport(BaseModel):
    """Everything a person needs to judge a synthesis run."""

    source: str
    model: str | None
    problems: int
    verified: int
    incomplete: int
    stages: list[StageYield]
    tools_histogram: dict[str, int]
    steps_histogram: dict[str, int]
    mean_tools: float | None
    mean_steps: float | None
    tasks: int
    rows: list[ProblemRow]
    llm_usage: dict[str, Any] = Field(default_factory=dict)
    sandbox: dict[str, Any] = Field(default_factory=dict, description="where: local or ray (...); per pool: counters")
    elapsed_s: float = 0.0


def _step_bin(steps: int) -> str:
    for low, high in zip(_STEP_BINS, _STEP_BINS[1:]):
        if low <= steps < high:
            return f"{low}-{high - 1}"
    return f"<{_STEP_BINS[0]}" if steps < _STEP_BINS[0] else f">{_STEP_BINS[-1] - 1}"


def build_report(source: str, model: str | None, states: list[ProblemState | None], stages: tuple[str, ...],
                 incomplete: dict[str, str], llm_usage: dict[str, Any], sandbox: dict[str, Any],
                 elapsed_s: float) -> SynthReport:
    """Aggregate per-problem states (``None``: the problem never started) into a report."""
    yields = {s: StageYield(stage=s, title=STAGE_TITLES[s]) for s in stages}
    rows: list[ProblemRow] = []
    tools: list[int] = []
    steps: list[int] = []
    for state in states:
        if state is None:
            continue
        for stage in stages:
            result = state.results.get(stage)
            if result is None:
                break
            y = yields[stage]
            y.entered += 1
            if result.passed:
                y.passed += 1
            else:
                y.dropped += 1
                y.reasons[result.code] = y.reasons.get(result.code, 0) + 1
                break
        dropped = state.dropped
        if state.verified and state.record is not None and state.finished(stages):  # stage 4 done, when it runs
            tools.append(len(state.record.tools))
            steps += [t.oracle_steps for t in state.tasks if t.oracle_steps is not None]
            rows.append(ProblemRow(problem_id=state.problem_id, gym_id=state.gym_id, verdict="verified",
                                   tools=len(state.record.tools), tasks=len(state.tasks)))
        elif dropped is not None:
            rows.append(ProblemRow(problem_id=state.problem_id, gym_id=state.gym_id, verdict="dropped",
                                   stage=dropped.stage, code=dropped.code, reason=dropped.reason))
        elif state.finished(stages):  # a run that stopped early (--until) and passed every stage it ran
            rows.append(ProblemRow(problem_id=state.problem_id, gym_id=state.gym_id, verdict="passed",
                                   stage=stages[-1], reason=f"passed every stage up to {stages[-1]}"))
        else:
            rows.append(ProblemRow(problem_id=state.problem_id, gym_id=state.gym_id, verdict="incomplete",
                                   reason=incomplete.get(state.problem_id, "")))
    tools_hist = Counter(str(n) for n in tools)
    steps_hist = Counter(_step_bin(n) for n in steps)
    step_order = [_step_bin(low) for low in _STEP_BINS[:-1]]
    return SynthReport(
        source=source, model=model, problems=len(states), verified=len(tools),
        incomplete=sum(r.verdict == "incomplete" for r in rows) + sum(s is None for s in states),
        stages=list(yields.values()),
        tools_histogram={k: tools_hist[k] for k in sorted(tools_hist, key=int)},
        steps_histogram={k: steps_hist.get(k, 0) for k in step_order},
        mean_tools=round(sum(tools) / len(tools), 2) if tools else None,
        mean_steps=round(sum(steps) / len(steps), 2) if steps else None,
        tasks=len(steps), rows=rows, llm_usage=llm_usage, sandbox=sandbox, elapsed_s=round(elapsed_s, 2),
    )


def render_markdown(report: SynthReport) -> str:
    """The report as Markdown: yield table, drop reasons, histograms, per-problem verdicts."""
    out = [f"# Synthesis report: {report.source}", ""]
    out.append(f"Model: `{report.model}` · problems: {report.problems} · verified gyms: **{report.verified}** · "
               f"tasks: {report.tasks} · incomplete (rerun to resume): {report.incomplete} · "
               f"time: {report.elapsed_s:.1f} s")
    if report.sandbox.get("where"):
        out += ["", f"Sandbox: {report.sandbox['where']}"]
    out += ["", "## Yield per stage", "", "| stage | entered | passed | dropped | yield | drop reasons |",
            "|---|---:|---:|---:|---:|---|"]
    for y in report.stages:
        rate = f"{100 * y.passed / y.entered:.0f}%" if y.entered else "-"
        reasons = ", ".join(f"{code} {n}" for code, n in sorted(y.reasons.items(), key=lambda kv: -kv[1])) or ""
        out.append(f"| {y.title} | {y.entered} | {y.passed} | {y.dropped} | {rate} | {reasons} |")
    out += ["", "## Tools per verified gym (Observe and Done included)", ""]
    out += [f"- {k} tools: {v}" for k, v in report.tools_histogram.items()] or ["- (no verified gyms)"]
    if report.mean_tools is not None:
        out.append(f"- mean: {report.mean_tools}")
    out += ["", "## Oracle steps per task", ""]
    out += [f"- {k}: {v}" for k, v in report.steps_histogram.items()]
    if report.mean_steps is not None:
        out.append(f"- mean: {report.mean_steps}")
    out += ["", "## Problems", "", "| problem | gym | verdict | stage | why |", "|---|---|---|---|---|"]
    for row in report.rows:
        why = (row.reason or (f"{row.tools} tools, {row.tasks} tasks" if row.verdict == "verified" else ""))
        why = why.replace("|", "\\|").replace("\n", " ")
        out.append(f"| {row.problem_id} | {row.gym_id} | {row.verdict} | {row.stage or ''} | {why[:300]} |")
    if report.llm_usage:
        u = report.llm_usage
        out += ["", "## LLM usage", "",
                f"requests {u.get('requests', 0)}, retries {u.get('retries', 0)}, cache hits {u.get('cache_hits', 0)}, "
                f"prompt tokens {u.get('prompt_tokens', 0)}, completion tokens {u.get('completion_tokens', 0)}, "
                f"cost ${u.get('cost_usd', 0):.4f} (tokens saved by the cache: "
                f"{u.get('saved_prompt_tokens', 0)} + {u.get('saved_completion_tokens', 0)})"]
    return "\n".join(out) + "\n"


def render_png(report: SynthReport) -> bytes | None:
    """Yield funnel and the two histograms as one PNG, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    names = [y.stage for y in report.stages]
    axes[0].bar(names, [y.entered for y in report.stages], color="#c8d6e5", label="entered")
    axes[0].bar(names, [y.passed for y in report.stages], color="#2e86de", label="passed")
    axes[0].set_title("Yield per stage")
    axes[0].legend()
    axes[1].bar(list(report.tools_histogram), list(report.tools_histogram.values()), color="#10ac84")
    axes[1].set_title("Tools per verified gym")
    axes[1].set_xlabel("tools (Observe and Done included)")
    axes[2].bar(list(report.steps_histogram), list(report.steps_histogram.values()), color="#ee5253")
    axes[2].set_title("Oracle steps per task")
    axes[2].set_xlabel("tool calls")
    for ax in axes:
        ax.set_ylabel("count")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_report(report: SynthReport, folder: Path) -> list[Path]:
    """Write report.json, report.md and report.png (if matplotlib is there); return the paths."""
    written = []
    for name, data in (("report.json", (report.model_dump_json(indent=1) + "\n").encode()),
                       ("report.md", render_markdown(report).encode()),
                       ("report.png", render_png(report))):
        if data is not None:
            atomic_write(folder / name, data)
            written.append(folder / name)
    return written
