"""The bundled original problems rebuild into verified gyms offline, from the shipped response cache."""

from __future__ import annotations

import anyio

from mcp_gyms.bank import Bank
from synthesis.llm import LLMClient, LLMConfig
from synthesis.pipeline import synthesize
from synthesis.problems import CACHE, MODEL
from synthesis.problems.record import record
from synthesis.sources import load_problems


def test_the_shipped_cache_matches_the_prompts_and_answers(tmp_path):
    assert record(check=True) >= 24  # raises SystemExit(1) naming the problems whose entries are stale


def test_bundled_problems_replay_into_verified_gyms(tmp_path):
    problems = load_problems("bundled")
    assert len(problems) >= 24 and len({p.question for p in problems}) == len(problems)

    async def main():
        async with LLMClient(LLMConfig(model=MODEL, base_url=None, api_key=None, cache_dir=CACHE, offline=True)) as llm:
            return await synthesize(problems, out=tmp_path / "bank", llm=llm, workers=2, source="bundled")

    report = anyio.run(main)
    assert report.incomplete == 0 and report.llm_usage["requests"] == 0
    assert report.verified >= 20, [(r.problem_id, r.reason) for r in report.rows if r.verdict != "verified"]
    bank = Bank.open(tmp_path / "bank")
    assert len(bank) == report.verified and all(g.verified and g.tasks >= 10 for g in bank.index.gyms)
    assert all(4 <= g.tools for g in bank.index.gyms)
    # the replay rebuilds the synthesized part of the bundled default bank exactly (timestamps aside)
    bundled = Bank.open()
    assert {g: bank.content_digest(g) for g in bank.gym_ids} == {g: bundled.content_digest(g) for g in bank.gym_ids}
