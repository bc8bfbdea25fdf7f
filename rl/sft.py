"""``codegym export-sft``: successful gym trajectories as multi-turn chat data for veRL's SFT trainer.

The paper's baseline is supervised fine-tuning on static trajectories; this writes them in the format veRL's
multi-turn SFT trainer reads (``verl.utils.dataset.multiturn_sft_dataset.MultiTurnSFTDataset``): parquet
with a ``messages`` column (the chat) and a ``tools`` column (the tools the chat template renders).

Where the trajectories come from:

- ``--bank PATH`` (oracle): every task of the bank played by its verified oracle — the bank is served by
  ``codegym serve --http`` in a child process, and each task's oracle calls are replayed through the real
  tools over MCP, one call per assistant turn. Only episodes the gym scored 1 are kept.
- ``--from-eval RUN_DIR``: the successful episodes (``reward >= 1``) of an evaluation run
  (``RUN_DIR/trajectories.jsonl``), every recorded call in order, grouped into the model's turns, with the
  observations the gym returned. The bank (``--bank``, default the bundled one) gives the task text and the
  tools, as it would in training.

Each conversation is what the RL agent loop would show the model: the system and user messages of
``codegym export-verl``, then per turn an assistant message (its text, if any, and its ``tool_calls`` with the
arguments as JSON text) and one ``tool`` message per call, observations cut like the loop cuts them. The
tools are the gym's, as its MCP server lists them, in OpenAI function format.

Columns: ``messages``; ``tools`` (structs, what veRL's own dataset class reads); ``tools_json`` (the same tools
as exact JSON text); ``data_source`` (``codegym``); ``extra_info`` (gym, task, seed, source, reward, tool_calls,
split, index). Parquet stores a column of structs with the union of its keys, so in ``tools`` a tool whose
JSON Schema lacks a key another tool has reads back with that key as null (e.g. a parameter-less tool shows
the other tools' parameters as null). :class:`rl.sft_dataset.CodeGymSFTDataset` — veRL's class reading
``tools_json`` instead — renders the tools exactly; point veRL's SFT trainer at it with
``data.custom_cls.path=pkg://rl.sft_dataset data.custom_cls.name=CodeGymSFTDataset``.
Files: ``train.parquet``, ``val.parquet`` (a stable hash split by gym and task), ``manifest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcp_gyms.bank import Bank, BankError
from mcp_gyms.client import GymClientError, connect
from mcp_gyms.protocol import openai_function_tools

from .export import DEFAULT_SYSTEM_PROMPT, _unit_hash, _user_message
from .settings import DATA_SOURCE, ServerSettings, cut_observation

__all__ = ["SftOptions", "SftReport", "add_arguments", "export_sft", "run"]


class SftOptions(BaseModel):
    """What ``codegym export-sft`` does (validated)."""

    model_config = ConfigDict(extra="forbid")

    bank: Path | None = Field(None, description="bank folder (None: the bundled bank)")
    from_eval: Path | None = Field(None, description="an eval run folder (or its trajectories.jsonl)")
    out: Path
    gyms: list[str] | None = None
    include_unverified: bool = False
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    salt: str = "codegym"
    max_observation_chars: int = Field(8192, ge=64, description="as rollout.multi_turn.max_tool_response_length")
    concurrency: int = Field(16, ge=1, description="oracle episodes played at once")
    workers: int | None = Field(None, ge=1, description="sandbox workers of the local gym server")
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    @model_validator(mode="after")
    def _eval_run_exists(self) -> SftOptions:
        if self.from_eval is not None and not self.from_eval.exists():
            raise ValueError(f"--from-eval {self.from_eval}: no such eval run folder or file")
        return self


class SftReport(BaseModel):
    """What was written."""

    source: str
    train_file: str
    val_file: str
    train_rows: int
    val_rows: int
    episodes_seen: int
    episodes_failed: int = Field(description="episodes left out because the gym did not score them 1")
    skipped: dict[str, str] = Field(default_factory=dict, description="gym (or gym/task) -> why it was left out")


def _assistant(content: str, calls: list[tuple[str, Any]]) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "name": None,
            "tool_calls": [{"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
                           for name, arguments in calls]}


def _conversation(prompt: list[dict[str, Any]], turns: list[tuple[str, list[tuple[str, Any, str]]]],
                  limit: int) -> list[dict[str, Any]]:
    """``prompt`` then, per turn ``(text, [(tool, arguments, observation), ...])``, the assistant message and
    its tool messages."""
    messages = [{"role": m["role"], "content": m["content"], "name": None, "tool_calls": None} for m in prompt]
    for text, calls in turns:
        messages.append(_assistant(text, [(name, arguments) for name, arguments, _ in calls]))
        messages.extend({"role": "tool", "content": cut_observation(observation, limit), "name": name,
                         "tool_calls": None} for name, _, observation in calls)
    return messages


class _Collector:
    """Plays or reads episodes against one local gym server; gathers rows and what was left out."""

    def __init__(self, bank: Bank, url: str, options: SftOptions) -> None:
        self.bank, self.url, self.options = bank, url, options
        self.rows: list[dict[str, Any]] = []
        self.skipped: dict[str, str] = {}
        self.seen = self.failed = 0

    def gyms(self, wanted: list[str] | None) -> list[str]:
        out = []
        for gym_id in wanted if wanted is not None else self.bank.gym_ids:
            if gym_id not in self.bank.gym_ids:
                self.skipped[gym_id] = "not in the bank"
            elif not self.bank.summary(gym_id).verified and not self.options.include_unverified:
                self.skipped[gym_id] = "not verified (pass --include-unverified to export it anyway)"
            else:
                out.append(gym_id)
        return out

    def prompt(self, gym_id: str) -> list[dict[str, Any]]:
        record = self.bank.gym(gym_id)
        return [{"role": "system", "content": self.options.system_prompt},
                {"role": "user", "content": _user_message(record.task_text, record.max_steps)}]

    def add(self, gym_id: str, task: str, seed: int, source: str, reward: float, tools: list[dict[str, Any]],
            turns: list[tuple[str, list[tuple[str, Any, str]]]]) -> None:
        self.rows.append({
            "messages": _conversation(self.prompt(gym_id), turns, self.options.max_observation_chars),
            "tools": tools, "tools_json": json.dumps(tools), "data_source": DATA_SOURCE,
            "extra_info": {"gym": gym_id, "task": task, "seed": seed, "source": source, "reward": reward,
                           "tool_calls": sum(len(calls) for _, calls in turns), "split": "", "index": 0},
        })

    async def oracle(self, gym_id: str) -> None:
        semaphore = asyncio.Semaphore(self.options.concurrency)
        async with connect(f"{self.url}/gyms/{gym_id}/mcp") as gym:
            tools = openai_function_tools([t.model_dump() for t in await gym.list_tools()])

            async def play(task: Any) -> None:
                async with semaphore:
                    self.seen += 1
                    try:
                        async with await gym.start(task=task.id, seed=task.seed) as episode:
                            plan = await episode.oracle_plan()
                            steps: list[tuple[str, list[tuple[str, Any, str]]]] = []
                            reward = 0.0
                            for call in plan.calls:
                                outcome = await episode.call(call.name, call.arguments)
                                steps.append(("", [(call.name, call.arguments, outcome.observation)]))
                                reward = outcome.reward
                                if outcome.done:
                                    break
                    except GymClientError as exc:
                        self.failed += 1
                        self.skipped[f"{gym_id}/{task.id}"] = f"the oracle episode failed: {exc}"
                        return
                    if reward >= 1.0:
                        self.add(gym_id, task.id, task.seed, "oracle", reward, tools, steps)
                    else:
                        self.failed += 1
                        self.skipped[f"{gym_id}/{task.id}"] = f"the oracle scored {reward:g}"

            await asyncio.gather(*(play(task) for task in self.bank.tasks(gym_id)))

    async def tools_of(self, gym_id: str) -> list[dict[str, Any]]:
        async with connect(f"{self.url}/gyms/{gym_id}/mcp") as gym:
            return openai_function_tools([t.model_dump() for t in await gym.list_tools()])

    async def from_eval(self, run: Path, wanted: list[str] | None) -> None:
        from eval.report import read_trajectories

        records = read_trajectories(run)
        allowed = set(self.gyms(sorted({r.gym for r in records} if wanted is None else set(wanted))))
        tools: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            if record.gym not in allowed:
                continue
            self.seen += 1
            if record.reward < 1.0:
                self.failed += 1
                continue
            if record.gym not in tools:
                tools[record.gym] = await self.tools_of(record.gym)
            texts = [m.get("content") or "" for m in record.messages if m.get("role") == "assistant"]
            by_turn: dict[int, list[tuple[str, Any, str]]] = defaultdict(list)
            for call in record.calls:
                arguments = call.arguments if call.arguments is not None else (call.raw_arguments or "")
                by_turn[call.turn].append((call.name, arguments, call.observation))
            turns = [(texts[turn] if turn < len(texts) and isinstance(texts[turn], str) else "", by_turn[turn])
                     for turn in sorted(by_turn)]
            self.add(record.gym, record.task_id, record.seed, f"eval:{record.policy}", record.reward,
                     tools[record.gym], turns)


def _split(rows: list[dict[str, Any]], options: SftOptions) -> dict[str, list[dict[str, Any]]]:
    keys = {(r["extra_info"]["gym"], r["extra_info"]["task"]) for r in rows}
    scores = {k: _unit_hash(options.salt, *k) for k in keys}
    val = {k for k, h in scores.items() if h < options.val_fraction}
    if options.val_fraction > 0 and not val and len(keys) >= 2:
        val = {min(scores, key=scores.__getitem__)}
    if len(val) == len(keys) and len(keys) >= 2:
        val.discard(max(val, key=scores.__getitem__))
    out: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    for row in rows:
        name = "val" if (row["extra_info"]["gym"], row["extra_info"]["task"]) in val else "train"
        row["extra_info"].update(split=name, index=len(out[name]))
        out[name].append(row)
    return out


def _write(rows: list[dict[str, Any]], path: Path, tools_type: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    call = pa.struct([("type", pa.string()), ("function", pa.struct([("name", pa.string()),
                                                                      ("arguments", pa.string())]))])
    message = pa.struct([("role", pa.string()), ("content", pa.string()), ("name", pa.string()),
                         ("tool_calls", pa.list_(call))])
    schema = pa.schema([
        ("messages", pa.list_(message)),
        ("tools", tools_type),
        ("tools_json", pa.string()),
        ("data_source", pa.string()),
        ("extra_info", pa.struct([("gym", pa.string()), ("task", pa.string()), ("seed", pa.int64()),
                                  ("source", pa.string()), ("reward", pa.float64()), ("tool_calls", pa.int64()),
                                  ("split", pa.string()), ("index", pa.int64())])),
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    tmp.replace(path)


def export_sft(options: SftOptions) -> SftReport:
    """Write ``train.parquet``, ``val.parquet`` and ``manifest.json`` into ``options.out``.

    Raises:
        BankError: the bank cannot be opened.
        ValueError: no successful trajectory to export, or an unreadable eval run.
        rl.servers.ServerStartError: the local gym server did not start.
    """
    import pyarrow as pa

    from .servers import GymServerProcess

    bank = Bank.open(options.bank)
    settings = ServerSettings(bank=str(bank.root), workers=options.workers)
    with GymServerProcess(settings) as server:
        assert server.url is not None
        collector = _Collector(bank, server.url, options)

        async def collect() -> None:
            if options.from_eval is not None:
                await collector.from_eval(options.from_eval, options.gyms)
            else:
                for gym_id in collector.gyms(options.gyms):
                    await collector.oracle(gym_id)

        asyncio.run(collect())
    source = f"eval run {options.from_eval}" if options.from_eval is not None else f"oracle of {bank.root}"
    if not collector.rows:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(collector.skipped.items())[:5])
        raise ValueError(f"no successful trajectory to export from the {source} "
                         f"({collector.seen} episode(s) seen{'; ' + reasons if reasons else ''})")
    collector.rows.sort(key=lambda r: (r["extra_info"]["gym"], r["extra_info"]["task"]))
    tools_type = pa.array([r["tools"] for r in collector.rows]).type
    split = _split(collector.rows, options)
    train_file, val_file = options.out / "train.parquet", options.out / "val.parquet"
    _write(split["train"], train_file, tools_type)
    _write(split["val"], val_file, tools_type)
    report = SftReport(source=source, train_file=str(train_file), val_file=str(val_file),
                       train_rows=len(split["train"]), val_rows=len(split["val"]), episodes_seen=collector.seen,
                       episodes_failed=collector.failed, skipped=collector.skipped)
    manifest = {**report.model_dump(), "bank_digest": bank.digest,
                "options": options.model_dump(mode="json", exclude={"system_prompt"})}
    (options.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report


# --- the `codegym export-sft` command ------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``codegym export-sft`` to ``parser``."""
    parser.add_argument("--bank", default=None,
                        help="bank whose oracle trajectories are exported (default: the bundled bank); with "
                             "--from-eval, the bank that gives the task texts and tools")
    parser.add_argument("--from-eval", default=None, metavar="RUN_DIR",
                        help="export the successful episodes of this eval run instead of the oracle's")
    parser.add_argument("--out", required=True, help="output folder for train.parquet, val.parquet, manifest.json")
    parser.add_argument("--gym", dest="gyms", action="append", default=None, metavar="GYM",
                        help="only this gym (repeatable; default: every gym)")
    parser.add_argument("--include-unverified", action="store_true", help="also export gyms that are not verified")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="share of tasks held out (default: 0.05)")
    parser.add_argument("--max-observation-chars", type=int, default=8192,
                        help="cut longer observations in the middle, as the RL loop does (default: 8192)")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers of the local gym server")


def run(args: argparse.Namespace) -> int:
    """Run ``codegym export-sft``; print a summary. Returns the exit code (2 for bad input)."""
    from pydantic import ValidationError

    from .servers import ServerStartError

    if importlib.util.find_spec("pyarrow") is None:
        print("codegym export-sft: needs pyarrow, which comes with the rl extra: pip install -e '.[rl]'",
              file=sys.stderr)
        return 2
    try:
        options = SftOptions(bank=args.bank, from_eval=args.from_eval, out=args.out, gyms=args.gyms,
                             include_unverified=args.include_unverified, val_fraction=args.val_fraction,
                             max_observation_chars=args.max_observation_chars, workers=args.workers)
        report = export_sft(options)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}".replace("--: ", "")
                             for e in exc.errors(include_url=False))
        print(f"codegym export-sft: {problems}", file=sys.stderr)
        return 2
    except (BankError, ValueError, OSError, ServerStartError) as exc:
        print(f"codegym export-sft: {exc}", file=sys.stderr)
        return 2
    print(f"exported {report.train_rows} train / {report.val_rows} val conversations from the {report.source} "
          f"({report.episodes_seen} episodes, {report.episodes_failed} not successful)\n"
          f"  {report.train_file}\n  {report.val_file}")
    return 0
