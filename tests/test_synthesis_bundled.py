"""The bundled original problems rebuild into verified gyms offline, from the shipped response cache."""

from __future__ import annotations

import json

import anyio

from mcp_gyms.bank import Bank
from synthesis.llm import LLMClient, LLMConfig
from synthesis.pipeline import synthesize
from synthesis.problems import CACHE, MODEL
from synthesis.problems.record import record
from synthesis.sources import load_problems


def test_the_shipped_cache_matches_the_prompts_and_answers(tmp_path):
    assert record(check=True) >= 40  # raises SystemExit(1) naming the problems whose entries are stale


def test_bundled_problems_replay_into_verified_gyms(tmp_path):
    problems = load_problems("bundled")
    assert len(problems) >= 40 and len({p.question for p in problems}) == len(problems)

    async def main():
        async with LLMClient(LLMConfig(model=MODEL, base_url=None, api_key=None, cache_dir=CACHE, offline=True)) as llm:
            return await synthesize(problems, out=tmp_path / "bank", llm=llm, workers=2, source="bundled")

    report = anyio.run(main)
    assert report.incomplete == 0 and report.llm_usage["requests"] == 0
    assert report.verified >= 39, [(r.problem_id, r.reason) for r in report.rows if r.verdict != "verified"]
    # the answer grows too fast for the limits: dropped on purpose, saying so (not as the model's fault)
    [gray] = [r for r in report.rows if r.verdict != "verified"]
    assert (gray.problem_id, gray.code) == ("cg-gray-code", "small_input_space") and "only 5 distinct" in gray.reason
    bank = Bank.open(tmp_path / "bank")
    assert len(bank) == report.verified and all(g.verified and g.tasks >= 10 for g in bank.index.gyms)
    assert all(4 <= g.tools for g in bank.index.gyms)
    # every problem shape of the bundled set became a verified gym, called as its tests' trial run showed
    work = tmp_path / "bank" / "synthesis" / "state"
    calls = {g: json.loads((work / f"{g}.json").read_text())["results"]["tests"]["details"]["call"]
             for g in ("cg-list-cycle-length", "cg-reverse-list", "cg-mirror-tree", "cg-nary-depth", "cg-graph-edges",
                       "cg-print-running-totals", "cg-insertion-sort", "cg-rotate-in-place", "cg-interval-cover")}
    assert calls == {
        "cg-list-cycle-length": "return; head: linked_list (ListNode)",
        "cg-reverse-list": "return; head: linked_list (ListNode); returns linked_list (ListNode)",
        "cg-mirror-tree": "return; root: binary_tree (TreeNode); returns binary_tree (TreeNode)",
        "cg-nary-depth": "return; root: nary_tree (Node)",
        "cg-graph-edges": "return; node: graph (Node)",
        "cg-print-running-totals": "stdout",
        "cg-insertion-sort": "argument nums",
        "cg-rotate-in-place": "argument nums",
        "cg-interval-cover": "return; parameter intervals: Interval (model-written conversion)",
    }
    assert {"cg-numpy-column-sums", "cg-next-prime", "cg-tree-depth", "cg-list-middle"} <= set(bank.gym_ids)
    assert any(t.config["head"]["pos"] >= 0 for t in bank.tasks("cg-list-cycle-length"))  # cycles, as JSON
    # the replay rebuilds the synthesized part of the bundled default bank exactly (timestamps aside)
    bundled = Bank.open()
    assert {g: bank.content_digest(g) for g in bank.gym_ids} == {g: bundled.content_digest(g) for g in bank.gym_ids}
