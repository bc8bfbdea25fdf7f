"""Bundled original problems and the recorded LLM answers that let ``codegym synth`` run offline.

- ``problems.jsonl`` — coding problems written by the CodeGym team in the KodCode shape (question,
  reference solution, pytest tests), one per line in :class:`synthesis.sources.Problem`'s shape.
- ``answers/<problem id>/`` — the answers to the pipeline's prompts for each problem: ``gym.md``
  (stage 1: title, task text, gym code) and ``inputs.json`` (stage 2: the two samples of inputs),
  optionally ``solve.json`` (stage 3 candidates; not needed when the gym's own ``solve`` works).
  They were written by the team, not sampled from a model, so the cache records them under the model
  name :data:`MODEL`.
- ``cache/`` — the response cache built from the answers by ``python -m synthesis.problems.record``
  (rerun it after changing a prompt template: the cache is keyed by the exact prompt text).

Replay: ``codegym synth bundled --replay bundled --out BANK``.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
ANSWERS = HERE / "answers"
CACHE = HERE / "cache"
MODEL = "codegym-authored"
