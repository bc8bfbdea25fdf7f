"""The veRL agent loop against a real gym server over HTTP, driven by a scripted model and a local tokenizer.

The loop is the real ``CodeGymAgentLoop`` on veRL's real ``AgentLoopBase`` (and, at the end, veRL's real
``AgentLoopWorker`` fed by ``RLHFDataset``); only the LLM server is scripted. The gym server is
``codegym serve --http`` on a test bank: the bundled ``coin_vault`` gym and a ``probe`` gym with a slow tool.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("verl") is None:
    pytest.skip("needs the rl extra (verl 0.9.1 on CPU torch); `make test` installs it", allow_module_level=True)

from verl.experimental.agent_loop.agent_loop import (  # noqa: E402
    AgentLoopWorker,
    DictConfigWrap,
    _agent_loop_registry,
)
from verl.protocol import DataProto  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402

from rl import agent_loop, gyms  # noqa: E402
from rl.agent_loop import CodeGymAgentLoop  # noqa: E402
from rl.export import ExportOptions, export  # noqa: E402
from rl.reward import SERVER_ERRORS_KEY, compute_score  # noqa: E402
from rl.servers import GymServerProcess  # noqa: E402
from rl.settings import AGENT_NAME, ServerSettings, SettingsError  # noqa: E402
from rl.testing import (  # noqa: E402
    Generation,
    ScriptedServerManager,
    build_tokenizer,
    hermes_call,
    make_test_bank,
    write_model_dir,
)
from rl.train import compose  # noqa: E402

RESPONSE_LENGTH = 2048
SYSTEM = {"role": "system", "content": "You are a careful agent."}
USER = {"role": "user", "content": "Find the hidden value and submit it."}


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rl-loop")


@pytest.fixture(scope="module")
def bank_path(workdir: Path) -> Path:
    make_test_bank(workdir / "bank")
    return workdir / "bank"


@pytest.fixture(scope="module")
def server_url(bank_path: Path) -> Any:
    with GymServerProcess(ServerSettings(bank=str(bank_path), workers=2, time_limit_s=1.0)) as server:
        assert server.url is not None
        yield server.url


@pytest.fixture(scope="module")
def model_dir(workdir: Path) -> Path:
    return write_model_dir(workdir / "model")


@pytest.fixture(scope="module")
def trainer_config(server_url: str, model_dir: Path, workdir: Path) -> Any:
    return compose([f"actor_rollout_ref.model.path={model_dir}", f"codegym.servers=[{server_url}]",
                    f"data.train_files={workdir}/data/train.parquet", f"data.val_files={workdir}/data/val.parquet",
                    "data.max_prompt_length=8192", f"data.max_response_length={RESPONSE_LENGTH}",
                    "data.train_batch_size=4", "actor_rollout_ref.rollout.n=1", "data.dataloader_num_workers=0",
                    "data.filter_overlong_prompts=false"])


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


@pytest.fixture(autouse=True)
async def _close_pool() -> Any:
    yield
    await gyms.close_all()


def make_loop(config: Any, manager: ScriptedServerManager, tokenizer: Any, *, response_length: int | None = None,
              multi_turn: dict[str, Any] | None = None, **settings: Any) -> CodeGymAgentLoop:
    if response_length is not None or multi_turn:
        config = copy.deepcopy(config)
    if response_length is not None:
        config.actor_rollout_ref.rollout.response_length = response_length
    for key, value in (multi_turn or {}).items():
        config.actor_rollout_ref.rollout.multi_turn[key] = value
    return CodeGymAgentLoop(trainer_config=DictConfigWrap(config), server_manager=manager, tokenizer=tokenizer,
                            processor=None, dataset_cls=RLHFDataset, data_config=DictConfigWrap(config.data),
                            hf_model_type="qwen2", **settings)


def row(gym: str = "probe", task: str = "t0", seed: int = 0) -> dict[str, Any]:
    return {"raw_prompt": [SYSTEM, USER], "data_source": "codegym",
            "tools_kwargs": {"codegym": {"create_kwargs": {"gym": gym, "task": task, "seed": seed}}}}


def model_spans(out: Any, manager: ScriptedServerManager, request_id: str) -> list[tuple[int, list[int]]]:
    """(offset in the response, tokens) of every generate call of one trajectory."""
    prompt_len = len(out.prompt_ids)
    return [(len(c.prompt_ids) - prompt_len, c.token_ids) for c in manager.calls if c.request_id == request_id]


def response_text(tokenizer: Any, out: Any, want_mask: int) -> str:
    return tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if m == want_mask])


# --- one episode, end to end ------------------------------------------------------------------------------
async def test_solves_a_task_token_in_token_out(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, [hermes_call("Read"), hermes_call("Done", {"answer": 7})],
                                    log_probs=True)
    loop = make_loop(trainer_config, manager, tokenizer)
    out = await loop.run({"temperature": 1.0, "logprobs": True}, **row("probe", "t0"))

    extra = out.extra_fields
    assert out.reward_score == 1.0
    assert (extra["codegym_ended"], extra["codegym_reward"], extra["codegym_tool_calls"],
            extra["codegym_invalid_calls"], extra["codegym_tool_errors"], extra["codegym_steps"]) == ("done", 1.0, 2, 0, 0, 2)
    assert out.num_turns == 4  # prompt, Read turn, its observation, Done turn
    assert extra["reward_extra_info"]["score"] == 1.0 and extra["reward_extra_info"]["codegym_scored_by"] == "gym"
    assert out.metrics.tool_calls > 0 and extra["codegym_env_time_s"] > 0

    # one request id for the whole trajectory; the model saw the gym's tools (as the server lists them)
    assert len(manager.calls) == 2 and len({c.request_id for c in manager.calls}) == 1
    prompt_text = tokenizer.decode(out.prompt_ids)
    for name in ("Observe", "Read", "Sleep", "Echo", "Done"):
        assert f'"name": "{name}"' in prompt_text
    assert SYSTEM["content"] in prompt_text and USER["content"] in prompt_text

    # token in, token out: each turn's prompt extends the previous prompt + output, never re-tokenised
    first, second = manager.calls
    assert second.prompt_ids[: len(first.prompt_ids) + len(first.token_ids)] == first.prompt_ids + first.token_ids
    assert first.prompt_ids == out.prompt_ids

    # masks: exactly the model's tokens have mask 1 (and their log-probs); the observation has mask 0
    spans = model_spans(out, manager, first.request_id)
    expected = [0] * len(out.response_ids)
    for offset, tokens in spans:
        assert out.response_ids[offset: offset + len(tokens)] == tokens
        expected[offset: offset + len(tokens)] = [1] * len(tokens)
    assert out.response_mask == expected
    assert out.response_logprobs == [-0.5 if m else 0.0 for m in expected]
    assert out.response_mask[-1] == 1  # the response ends on the model's last token (reward goes there)
    assert "<tool_response>\n7\n</tool_response>" in response_text(tokenizer, out, 0)
    assert "Done" in response_text(tokenizer, out, 1)

    # max_tokens is what is left of the response budget
    assert first.sampling_params["max_tokens"] == RESPONSE_LENGTH
    assert second.sampling_params["max_tokens"] == RESPONSE_LENGTH - spans[1][0]
    assert first.sampling_params["temperature"] == 1.0


async def test_wrong_answer_scores_zero_and_trajectories_share_one_connection(trainer_config: Any,
                                                                              tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, [hermes_call("Read"), hermes_call("Done", {"answer": 8})])
    loop = make_loop(trainer_config, manager, tokenizer)
    outs = await asyncio.gather(*(loop.run({}, **row("probe", task)) for task in ("t0", "t1", "t2")))
    assert [o.reward_score for o in outs] == [0.0, 0.0, 0.0]
    assert {o.extra_fields["codegym_ended"] for o in outs} == {"done"}
    assert len({c.request_id for c in manager.calls}) == 3  # one request id per trajectory
    pools = [owned.pool for owned in gyms._POOLS[asyncio.get_running_loop()].values()]
    assert len(pools) == 1  # one pool per worker event loop, with one connection per (server, gym)
    assert [gym for _, gym in pools[0].connections()] == ["probe"], pools[0].connections()


async def test_bad_calls_are_observations_and_counted(trainer_config: Any, tokenizer: Any) -> None:
    bad_turn = ('<tool_call>\n{"name": "Read", "arguments": {</tool_call>'  # unreadable JSON
                + hermes_call("Teleport", {"to": 3})  # unknown tool
                + hermes_call("Sleep", {"seconds": "soon"})  # wrong argument type
                + '<tool_call>\n{"name": "Echo", "arguments": [1, 2]}\n</tool_call>')  # arguments not an object
    manager = ScriptedServerManager(tokenizer, [bad_turn, hermes_call("Read"), hermes_call("Done", {"answer": 7})])
    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row("probe", "t0"))
    extra = out.extra_fields
    assert out.reward_score == 1.0 and extra["codegym_ended"] == "done"
    assert extra["codegym_invalid_calls"] == 4 and extra["codegym_tool_errors"] == 0
    assert extra["codegym_tool_calls"] == 6
    assert extra["codegym_steps"] == 4  # the server saw Teleport, Sleep, Read, Done; the other two never left
    observations = response_text(tokenizer, out, 0)
    # one error observation per call, in the order the model wrote the calls
    order = [observations.index(s) for s in ("a tool call could not be read", "unknown tool 'Teleport'",
                                             "invalid arguments for Sleep", "arguments must be a JSON object")]
    assert order == sorted(order)


async def test_unreadable_calls_keep_their_place_among_the_calls(trainer_config: Any, tokenizer: Any) -> None:
    turn = (hermes_call("Echo", {"text": "first"}) + "<tool_call>\nnot json\n</tool_call>"
            + hermes_call("Echo", {"text": "third"}))
    manager = ScriptedServerManager(tokenizer, [turn, hermes_call("Read"), hermes_call("Done", {"answer": 7})])
    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row("probe", "t0"))
    observations = response_text(tokenizer, out, 0)
    first, bad, third = (observations.index(s) for s in ("first", "could not be read", "third"))
    assert first < bad < third and out.extra_fields["codegym_invalid_calls"] == 1


async def test_tool_call_cap_ends_the_trajectory(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, default=hermes_call("Read") + hermes_call("Read"))
    out = await make_loop(trainer_config, manager, tokenizer, max_tool_calls=3).run({}, **row("probe", "t1"))
    extra = out.extra_fields
    assert extra["codegym_ended"] == "tool_call_cap"
    assert extra["codegym_tool_calls"] == 3 and extra["codegym_steps"] == 3
    assert out.reward_score == 0.0  # the gym's verdict: no Done, no reward
    assert len(manager.calls) == 2
    assert out.response_mask[-1] == 1  # the third call's observation is not appended


async def test_generation_is_cut_at_the_response_budget(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, ["x" * 1000])
    out = await make_loop(trainer_config, manager, tokenizer, response_length=300).run({}, **row())
    assert len(out.response_ids) == 300 and out.response_mask == [1] * 300
    assert manager.calls[0].sampling_params["max_tokens"] == 300
    assert out.extra_fields["codegym_ended"] == "response_length" and out.reward_score == 0.0


async def test_second_turn_gets_what_is_left_of_the_budget(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, [hermes_call("Echo", {"text": "y" * 100}), "z" * 5000])
    out = await make_loop(trainer_config, manager, tokenizer, response_length=1200).run({}, **row())
    first, second = manager.calls
    used = len(second.prompt_ids) - len(first.prompt_ids)  # first turn + observation
    assert second.sampling_params["max_tokens"] == 1200 - used
    assert len(out.response_ids) == 1200 and len(out.response_mask) == 1200
    assert out.extra_fields["codegym_ended"] == "response_length"


async def test_observation_that_does_not_fit_is_not_appended(trainer_config: Any, tokenizer: Any) -> None:
    turn = hermes_call("Echo", {"text": "y" * 400})
    manager = ScriptedServerManager(tokenizer, [turn])
    out = await make_loop(trainer_config, manager, tokenizer, response_length=600).run({}, **row())
    assert out.extra_fields["codegym_ended"] == "response_length"
    assert out.extra_fields["codegym_tool_calls"] == 1  # Echo ran; its 400 characters did not fit
    assert out.response_ids == manager.calls[0].token_ids and set(out.response_mask) == {1}


async def test_a_tool_over_the_sandbox_time_limit_is_a_tool_error(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, [hermes_call("Sleep", {"seconds": 5}), hermes_call("Read"),
                                                hermes_call("Done", {"answer": 42})])
    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row("probe", "t2"))
    extra = out.extra_fields
    assert extra["codegym_tool_errors"] == 1 and extra["codegym_ended"] == "done" and out.reward_score == 1.0
    assert "Error" in response_text(tokenizer, out, 0)


async def test_a_server_that_times_out_scores_zero_and_is_counted(trainer_config: Any, tokenizer: Any) -> None:
    # the model reads the value, then a call times out before its right answer: the gym never judged it
    manager = ScriptedServerManager(tokenizer, [hermes_call("Read"), hermes_call("Sleep", {"seconds": 0.8})
                                                + hermes_call("Done", {"answer": 7})])
    loop = make_loop(trainer_config, manager, tokenizer, call_timeout_s=0.3)
    out = await loop.run({}, **row("probe", "t0"))
    extra = out.extra_fields
    assert extra["codegym_ended"] == "server_error" and "Sleep" in extra["codegym_error"]
    assert out.reward_score == 0.0 and extra["codegym_reward"] == 0.0  # never text-matched to the answer 7
    info = extra["reward_extra_info"]
    assert (info["codegym_scored_by"], info[SERVER_ERRORS_KEY], info["score"]) == ("server_error", 1, 0.0)
    assert out.response_mask[-1] == 1 and len(manager.calls) == 2
    assert compute_score("codegym", tokenizer.decode(out.response_ids), "7", extra)["score"] == 0.0


async def test_unreachable_server_and_unknown_gym(trainer_config: Any, tokenizer: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    manager = ScriptedServerManager(tokenizer, [])
    before = (agent_loop.TALLY.server_errors, agent_loop.TALLY.trajectories)
    with caplog.at_level(logging.WARNING, logger="rl.agent_loop"):
        out = await make_loop(trainer_config, manager, tokenizer, servers=[dead], call_timeout_s=2).run({}, **row())
    assert out.extra_fields["codegym_ended"] == "server_error" and out.reward_score == 0.0
    # veRL's V1 trainer shows reward_extra_info only for validation: the worker's log counts them as they happen
    assert (agent_loop.TALLY.server_errors, agent_loop.TALLY.trajectories) == (before[0] + 1, before[1] + 1)
    assert f"{before[0] + 1} of {before[1] + 1} trajectories in this worker" in caplog.text
    assert out.extra_fields["reward_extra_info"][SERVER_ERRORS_KEY] == 1
    # never an empty response (veRL's reward code indexes its last token): one EOS, outside the loss
    assert out.response_ids == [tokenizer.eos_token_id] and out.response_mask == [0] and manager.calls == []

    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row(gym="no_such_gym"))
    assert out.extra_fields["codegym_ended"] == "server_error" and "no_such_gym" in out.extra_fields["codegym_error"]
    assert out.reward_score == 0.0 and out.response_mask == [0]


async def test_text_answer_without_a_tool_call_ends_the_episode(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, ["The answer is 7."])
    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row())
    assert out.extra_fields["codegym_ended"] == "no_tool_call" and out.reward_score == 0.0


async def test_bad_settings_and_rows_fail_clearly(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, [])
    with pytest.raises(SettingsError, match="max_tool_calls"):
        make_loop(trainer_config, manager, tokenizer, max_tool_calls=0)
    with pytest.raises(SettingsError, match="no_such_setting"):
        make_loop(trainer_config, manager, tokenizer, no_such_setting=1)
    with pytest.raises(SettingsError, match="Unknown tool parser"):
        make_loop(trainer_config, manager, tokenizer, tool_parser="smoke-signals")
    with pytest.raises(SettingsError, match="export-verl"):
        await make_loop(trainer_config, manager, tokenizer).run({}, raw_prompt=[USER], extra_info={})


# --- veRL's own worker path: parquet -> RLHFDataset -> AgentLoopWorker -> this loop --------------------------
async def test_agent_loop_worker_runs_exported_rows(trainer_config: Any, bank_path: Path, workdir: Path) -> None:
    report = export(ExportOptions(bank=bank_path, out=workdir / "data", gyms=["probe"], include_unverified=True,
                                  val_fraction=0.0))
    assert report.train_rows == 3
    assert _agent_loop_registry[AGENT_NAME]["_target_"] == "rl.agent_loop.CodeGymAgentLoop"

    worker = AgentLoopWorker(trainer_config, llm_client=None)  # builds the tokenizer from the model folder
    worker.llm_client = manager = ScriptedServerManager(worker.tokenizer, [hermes_call("Read"),
                                                                           hermes_call("Done", {"answer": 11})])
    dataset = RLHFDataset(report.train_file, worker.tokenizer, trainer_config.data)
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(len(dataset))]))
    out = await worker.generate_sequences(batch)

    answers = [json.loads(r["ground_truth"]) for r in batch.non_tensor_batch["reward_model"]]
    expected = [1.0 if a == 11 else 0.0 for a in answers]
    assert sorted(expected) == [0.0, 0.0, 1.0]
    scores, mask, attention = out.batch["rm_scores"], out.batch["response_mask"], out.batch["attention_mask"]
    prompt_width = out.batch["prompts"].shape[1]
    for i, want in enumerate(expected):
        last = int(attention[i, prompt_width:].sum()) - 1  # the last response token
        assert scores[i, last].item() == want and scores[i].sum().item() == want  # reward on that token only
        assert mask[i, last].item() == 1  # ... which the model generated
    assert list(out.non_tensor_batch["codegym_ended"]) == ["done"] * 3
    assert list(out.non_tensor_batch["__num_turns__"]) == [4, 4, 4]
    assert out.meta_info["reward_extra_keys"][:2] == ["score", "acc"]
    assert len(manager.calls) == 6


# --- what the engine may return: empty, aborted, length-capped --------------------------------------------
async def test_an_empty_first_generation_never_gives_an_empty_response(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, [Generation("", eos=False)])
    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row())
    assert out.extra_fields["codegym_ended"] == "empty_generation" and out.reward_score == 0.0
    assert out.response_ids == [tokenizer.eos_token_id] and out.response_mask == [0]


async def test_an_empty_later_generation_ends_on_the_models_last_token(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, [hermes_call("Read"), Generation("", eos=False)], log_probs=True)
    out = await make_loop(trainer_config, manager, tokenizer).run({"logprobs": True}, **row())
    assert out.extra_fields["codegym_ended"] == "empty_generation" and out.reward_score == 0.0
    assert out.response_ids == manager.calls[0].token_ids  # the Read observation is cut off the end
    assert set(out.response_mask) == {1} and len(out.response_logprobs) == len(out.response_ids)


async def test_an_aborted_generation_ends_the_trajectory(trainer_config: Any, tokenizer: Any) -> None:
    cut = Generation('<tool_call>\n{"name": "Done", "argu', stop_reason="aborted", eos=False)
    manager = ScriptedServerManager(tokenizer, [hermes_call("Read"), cut])
    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row())
    extra = out.extra_fields
    assert extra["codegym_ended"] == "aborted" and extra["codegym_tool_calls"] == 1 and out.reward_score == 0.0
    assert out.response_mask[-1] == 1 and tokenizer.decode(out.response_ids).endswith('"argu')

    manager = ScriptedServerManager(tokenizer, [Generation("", stop_reason="aborted", eos=False)])
    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row())
    assert out.extra_fields["codegym_ended"] == "aborted" and out.response_mask == [0]


async def test_a_length_capped_turn_without_eos_is_not_run(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, [Generation(hermes_call("Read")[:-3], eos=False)])
    out = await make_loop(trainer_config, manager, tokenizer).run({}, **row())
    assert out.extra_fields["codegym_ended"] == "no_tool_call" and out.extra_fields["codegym_tool_calls"] == 0


# --- veRL's multi_turn settings take effect, or are refused -------------------------------------------------
async def test_max_assistant_turns_and_max_user_turns(trainer_config: Any, tokenizer: Any) -> None:
    manager = ScriptedServerManager(tokenizer, default=hermes_call("Read"))
    out = await make_loop(trainer_config, manager, tokenizer, multi_turn={"max_assistant_turns": 3}).run({}, **row())
    assert out.extra_fields["codegym_ended"] == "turn_cap" and len(manager.calls) == 3
    assert out.num_turns == 1 + 3 + 2 and out.response_mask[-1] == 1
    assert out.extra_fields["codegym_tool_calls"] == 3  # the last turn's call ran; its observation is not there

    manager = ScriptedServerManager(tokenizer, default=hermes_call("Read"))
    out = await make_loop(trainer_config, manager, tokenizer, multi_turn={"max_user_turns": 2}).run({}, **row())
    assert out.extra_fields["codegym_ended"] == "turn_cap" and len(manager.calls) == 3


async def test_max_parallel_calls_refuses_the_rest_of_a_turn(trainer_config: Any, tokenizer: Any) -> None:
    turn = hermes_call("Echo", {"text": "one"}) + hermes_call("Echo", {"text": "two"}) + hermes_call("Read")
    manager = ScriptedServerManager(tokenizer, [turn, hermes_call("Done", {"answer": 7})])
    out = await make_loop(trainer_config, manager, tokenizer, multi_turn={"max_parallel_calls": 2}).run({}, **row())
    extra = out.extra_fields
    assert extra["codegym_ended"] == "done" and out.reward_score == 1.0
    assert (extra["codegym_tool_calls"], extra["codegym_invalid_calls"], extra["codegym_steps"]) == (4, 1, 3)
    observations = response_text(tokenizer, out, 0)
    assert "at most 2 tool call(s) per turn" in observations and "\n7\n" not in observations  # Read never ran


async def test_max_tool_response_length_cuts_observations(trainer_config: Any, tokenizer: Any) -> None:
    text = "a" * 150 + "b" * 150
    manager = ScriptedServerManager(tokenizer, [hermes_call("Echo", {"text": text}), hermes_call("Done", {"answer": 7})])
    loop = make_loop(trainer_config, manager, tokenizer,
                     multi_turn={"max_tool_response_length": 100, "tool_response_truncate_side": "left"})
    out = await loop.run({}, **row())
    observation = response_text(tokenizer, out, 0).split("<tool_response>\n")[1].split("\n</tool_response>")[0]
    assert observation == "...[200 characters cut]..." + "b" * 100


@pytest.mark.parametrize(("multi_turn", "match"), [
    ({"tool_config_path": "/some/tools.yaml"}, "tool_config_path is set"),
    ({"function_tool_path": "/some/tools.py"}, "function_tool_path is set"),
    ({"max_parallel_calls": 0}, "max_parallel_calls must be a positive integer"),
    ({"tool_response_truncate_side": "both"}, "left, middle or right"),
])
def test_multi_turn_settings_the_loop_cannot_honour_are_refused(trainer_config: Any, tokenizer: Any,
                                                               multi_turn: dict[str, Any], match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        make_loop(trainer_config, ScriptedServerManager(tokenizer, []), tokenizer, multi_turn=multi_turn)


# --- a dropped link: the trajectory whose call was out ends (scored 0); the others on the connection go on ----
class LinkCutter:
    """A TCP proxy to the gym server that cuts a connection when a request carrying ``marker`` passes (the
    request never reaches the server), and can cut every open connection at once.

    With ``hold``, a request carrying that text is forwarded at once but its answer is held back until the
    first cut, and that cut waits until such a request has passed: so the held call is surely out while
    the link of the other is cut (no timing luck)."""

    def __init__(self, upstream: str, marker: bytes, hold: bytes | None = None) -> None:
        self.host, self.port = upstream.removeprefix("http://").split(":")
        self.marker = marker
        self.hold = hold
        self.open: set[asyncio.StreamWriter] = set()
        self.cut = 0
        self.held = asyncio.Event()  # a request carrying `hold` has been forwarded
        self.cut_done = asyncio.Event()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def cut_all(self) -> None:
        for writer in list(self.open):
            writer.transport.abort()
        self.cut += 1
        self.cut_done.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, int(self.port))
        self.open |= {writer, up_writer}
        holding = asyncio.Event()  # this connection carried a held request: answer only after the cut

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, inspect: bool) -> None:
            try:
                while data := await src.read(65536):
                    if inspect and self.marker in data:
                        if self.hold is not None:
                            await self.held.wait()
                        self.cut += 1
                        writer.transport.abort()
                        up_writer.transport.abort()
                        self.cut_done.set()
                        return
                    if not inspect and holding.is_set():
                        await self.cut_done.wait()
                    dst.write(data)
                    await dst.drain()
                    if inspect and self.hold is not None and self.hold in data:
                        holding.set()
                        self.held.set()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self.open -= {writer, up_writer}

    async def aclose(self) -> None:
        self.server.close()
        self.cut_all()


async def test_a_link_cut_between_turns_reconnects(trainer_config: Any, tokenizer: Any, server_url: str) -> None:
    cutter = LinkCutter(server_url, marker=b"cut-this-link")
    url = await cutter.start()
    try:
        # every TCP connection cut while the model generates: the next call reconnects, the trajectory goes on
        manager = ScriptedServerManager(tokenizer, [hermes_call("Read"), lambda turn, prompt: (
            cutter.cut_all(), hermes_call("Done", {"answer": 7}))[1]])
        out = await make_loop(trainer_config, manager, tokenizer, servers=[url]).run({}, **row("probe", "t0"))
        assert cutter.cut == 1 and out.extra_fields["codegym_ended"] == "done" and out.reward_score == 1.0

        # a cut while a call is out: that trajectory cannot be judged (the call may or may not have run)
        manager = ScriptedServerManager(tokenizer, [hermes_call("Echo", {"text": "cut-this-link"})])
        lost = await make_loop(trainer_config, manager, tokenizer, servers=[url]).run({}, **row("probe", "t1"))
        assert cutter.cut == 2 and lost.extra_fields["codegym_ended"] == "server_error" and lost.reward_score == 0.0
        assert lost.extra_fields["reward_extra_info"][SERVER_ERRORS_KEY] == 1
    finally:
        await cutter.aclose()


async def test_a_link_cut_during_one_call_spares_the_other_calls_in_flight(trainer_config: Any, tokenizer: Any,
                                                                            server_url: str) -> None:
    """Two trajectories share the worker's pooled connection; the link of one is cut while the other's call
    is out (the proxy holds that call's answer until after the cut): only the cut one ends."""
    cutter = LinkCutter(server_url, marker=b"cut-this-link", hold=b"hold-this-call")
    url = await cutter.start()
    try:
        victim = ScriptedServerManager(tokenizer, [hermes_call("Echo", {"text": "cut-this-link"})])
        other = ScriptedServerManager(tokenizer, [hermes_call("Echo", {"text": "hold-this-call"}), hermes_call("Read"),
                                                  hermes_call("Done", {"answer": 7})])
        lost, kept = await asyncio.gather(
            make_loop(trainer_config, victim, tokenizer, servers=[url]).run({}, **row("probe", "t0")),
            make_loop(trainer_config, other, tokenizer, servers=[url]).run({}, **row("probe", "t0")))
        assert cutter.cut == 1 and cutter.held.is_set()
        assert lost.extra_fields["codegym_ended"] == "server_error" and lost.reward_score == 0.0
        assert lost.extra_fields["reward_extra_info"][SERVER_ERRORS_KEY] == 1
        # the other trajectory shares the pooled connection and had a call out when the link dropped
        assert kept.extra_fields["codegym_ended"] == "done" and kept.reward_score == 1.0, kept.extra_fields
        assert "hold-this-call" in response_text(tokenizer, kept, 0)
    finally:
        await cutter.aclose()
