"""`bulk run|submit --dry-run`: what each judge of a manifest would call and cost, before any call.

The transcripts are not known before the run, so the LLM judges are estimated on turns of an assumed
length (`evalsvc.judges.estimate_unseen`); EmpathyEval runs on the service's own model and calls no
LLM. `max_cost_usd` is the bound a `--max-cost` check plans with (every reply at the token limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalsvc.judges.estimate import estimate_unseen
from evalsvc.judges.judges import JudgeSpec
from evalsvc.llm_client import LLMConfig
from evalsvc.settings import Settings
from evalsvc.store.models import EMPATHYEVAL_JUDGE


def dry_run_plan(settings: Settings, pairs: int, judges: Sequence[str]) -> dict[str, Any]:
    llm = LLMConfig.from_settings(settings)
    rows: list[dict[str, Any]] = []
    for judge in judges:
        if judge == EMPATHYEVAL_JUDGE:
            rows.append(
                {
                    "judge": judge,
                    "pairs": pairs,
                    "calls": 0,
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "max_output_tokens": 0,
                    "cost_usd": 0.0,
                    "max_cost_usd": 0.0,
                }
            )
            continue
        spec = JudgeSpec.parse(judge, settings.llm_prompt_language)
        rows.append(estimate_unseen(spec, pairs, llm).to_dict())
    costs = [row["cost_usd"] for row in rows]
    bounds = [row["max_cost_usd"] for row in rows]
    return {
        "pairs": pairs,
        "llm": {"base_url": llm.base_url, "model": llm.model},
        "judges": rows,
        "total": {
            "calls": sum(row["calls"] for row in rows),
            "input_tokens": sum(row["input_tokens"] for row in rows),
            "output_tokens": sum(row["output_tokens"] for row in rows),
            "cost_usd": None if None in costs else sum(costs),
            "max_cost_usd": None if None in bounds else sum(bounds),
        },
    }


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """The plan as a few lines for a person (stderr), one per judge and the total."""

    def money(value: float | None) -> str:
        return "unknown (set EVALSVC_LLM_PRICE_*)" if value is None else f"${value:.2f}"

    lines = [f"dry run: {plan['pairs']} pair(s), LLM {plan['llm']['model']} at {plan['llm']['base_url']}"]
    for row in [*plan["judges"], {"judge": "total", **plan["total"]}]:
        lines.append(
            f"  {row['judge']:<24} {row['calls']:>8} calls {row['input_tokens']:>10} input tokens  "
            f"expected {money(row['cost_usd'])}, at most {money(row['max_cost_usd'])}"
        )
    lines.append("nothing was recorded and no LLM was called")
    return lines
