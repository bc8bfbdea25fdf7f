"""The agent loop on veRL 0.9.1's default trainer path (``trainer.use_v1=true``), as the V1 trainer drives it.

Everything here is veRL's own code except the model: exported parquet -> ``RLHFDataset`` -> veRL's
``collate_fn`` -> TensorDict -> prompts registered in TransferQueue -> veRL's ``AgentLoopManagerTQ`` with
two ``AgentLoopWorkerTQ`` Ray actors (each with its own pooled gym client) -> ``CodeGymAgentLoop`` -> a real
``codegym serve --http`` -> outputs put into TransferQueue by veRL and read back by key, as its trainer does.
The LLM is a scripted Ray actor behind veRL's own ``LLMServerClient`` and load balancer (the interface a
vLLM replica offers), answering completions, an empty generation, an aborted one and a length-capped one.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("verl") is None or importlib.util.find_spec("transfer_queue") is None:
    pytest.skip("needs the rl extra (verl 0.9.1 and transferqueue on CPU torch); `make test` installs it",
                allow_module_level=True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import ray  # noqa: E402
import transfer_queue as tq  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl.trainer.constants_ppo import get_ppo_ray_runtime_env  # noqa: E402
from verl.trainer.ppo.v1 import AgentLoopManagerTQ  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402
from verl.workers.rollout.llm_server import LLMServerClient  # noqa: E402
from verl.workers.rollout.router import get_router_handle  # noqa: E402

from rl.export import ExportOptions, export  # noqa: E402
from rl.reward import SERVER_ERRORS_KEY  # noqa: E402
from rl.servers import GymServerProcess  # noqa: E402
from rl.settings import ServerSettings  # noqa: E402
from rl.testing import (  # noqa: E402
    Generation,
    ScriptedLLMServer,
    build_tokenizer,
    hermes_call,
    make_test_bank,
    write_model_dir,
)
from rl.train import compose  # noqa: E402

RESPONSE_LENGTH = 1024
SESSIONS = 2  # rollout.n

# What the scripted model answers, by what the prompt holds (first match wins). The probe tasks hide 7, 11
# and 42: after reading 7 it submits 7; after 11 the engine returns nothing; after 42 it is aborted mid-call.
# A coin_vault prompt gets text past the response budget (cut by max_tokens, as vLLM cuts at max_tokens).
RULES: list[tuple[str, str | Generation]] = [
    ("<tool_response>\n7\n</tool_response>", hermes_call("Done", {"answer": 7})),
    ("<tool_response>\n11\n</tool_response>", Generation("", eos=False)),
    ("<tool_response>\n42\n</tool_response>", Generation('<tool_call>\n{"name": "Done", "argu', stop_reason="aborted",
                                                         eos=False)),
    ('"name": "Read"', hermes_call("Read")),
    ("", "x" * (2 * RESPONSE_LENGTH)),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("rl-v1")
    make_test_bank(work / "bank")
    model = write_model_dir(work / "model")
    report = export(ExportOptions(bank=work / "bank", out=work / "data", gyms=["probe", "coin_vault"],
                                  include_unverified=True, val_fraction=0.0))
    rows = pd.read_parquet(report.train_file)
    rows = pd.concat([rows[rows.extra_info.map(lambda e: e["gym"] == "probe")],
                      rows[rows.extra_info.map(lambda e: e["gym"] == "coin_vault")].head(1)])
    broken = rows.iloc[[0]].copy()  # a gym the server does not have: the server fails before the first token
    broken.at[broken.index[0], "extra_info"] = {
        **broken.iloc[0].extra_info, "gym": "no_such_gym",
        "tools_kwargs": {"codegym": {"create_kwargs": {"gym": "no_such_gym", "task": "t0", "seed": 0}}}}
    train_file = work / "data" / "v1.parquet"
    pd.concat([rows, broken]).to_parquet(train_file)

    with GymServerProcess(ServerSettings(bank=str(work / "bank"), workers=2, time_limit_s=2.0)) as server:
        config = compose([f"actor_rollout_ref.model.path={model}", f"codegym.servers=[{server.url}]",
                          f"data.train_files={train_file}", f"data.val_files={train_file}",
                          "data.max_prompt_length=8192", f"data.max_response_length={RESPONSE_LENGTH}",
                          "data.train_batch_size=5", f"actor_rollout_ref.rollout.n={SESSIONS}",
                          "actor_rollout_ref.rollout.agent.num_workers=2", "trainer.device=cpu",
                          "actor_rollout_ref.rollout.calculate_log_probs=true",
                          "data.dataloader_num_workers=0", "data.filter_overlong_prompts=false",
                          # TransferQueue's default is 8 storage actors of 1 CPU each (+ its controller)
                          "transfer_queue.backend.SimpleStorage.num_data_storage_units=1"])
        # as veRL's run_ppo starts Ray for the V1 trainer
        runtime_env = dict(get_ppo_ray_runtime_env(config))
        runtime_env.setdefault("env_vars", {})["TRANSFER_QUEUE_ENABLE"] = "1"
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env,
                 namespace="codegym-v1-test")
        try:
            config.transfer_queue.enable = True  # as TaskRunnerV1.run does
            OmegaConf.resolve(config)
            tq.init(config.transfer_queue)
            try:
                yield config, train_file
            finally:
                tq.close()
        finally:
            ray.shutdown()


def submit(config: Any, train_file: Path, llm_client: Any) -> dict[str, Any]:
    """One rollout step as veRL's V1 sync trainer runs it; returns every session's output by key."""
    manager = AgentLoopManagerTQ.create(config=config, llm_client=llm_client, teacher_client=None,
                                        reward_loop_worker_handles=None)
    tokenizer = build_tokenizer()
    dataset = RLHFDataset(str(train_file), tokenizer, config.data)
    batch_dict = collate_fn([dataset[i] for i in range(len(dataset))])
    batch_dict["uid"] = np.array([f"prompt{i}" for i in range(len(dataset))], dtype=object)
    batch = tu.get_tensordict(batch_dict)
    tu.assign_non_tensor_data(batch, "global_steps", 1)
    uids = list(batch["uid"])
    tq.kv_batch_put(keys=uids, partition_id="train",
                    tags=[{"is_prompt": True, "status": "pending", "global_steps": 1} for _ in uids])
    manager.generate_sequences(batch)

    deadline = time.monotonic() + 240
    while True:  # what veRL's ReplayBuffer polls: each prompt's status tag
        tags = tq.kv_list("train")["train"]
        statuses = {uid: tags[uid].get("status") for uid in uids if uid in tags}
        if all(statuses.get(uid) in ("finished", "failure") for uid in uids):
            break
        assert time.monotonic() < deadline, f"rollout did not finish: {statuses}"
        time.sleep(0.5)
    assert set(statuses.values()) == {"finished"}, statuses  # no group failed (a crash marks it "failure")
    keys = [f"{uid}_{s}_0" for uid in uids for s in range(SESSIONS)]
    data = tq.kv_batch_get(keys=keys, partition_id="train",
                           select_fields=["responses", "response_mask", "rm_scores", "extra_fields", "num_turns",
                                          "rollout_log_probs"])
    out = {}
    for i, key in enumerate(keys):
        out[key] = {"responses": data["responses"][i].tolist(), "response_mask": data["response_mask"][i].tolist(),
                    "rm_scores": data["rm_scores"][i].tolist(), "extra": data["extra_fields"][i],
                    "num_turns": int(data["num_turns"][i]), "log_probs": data["rollout_log_probs"][i].tolist()}
    return out


def test_default_v1_path_end_to_end(setup: Any) -> None:
    config, train_file = setup
    assert config.trainer.use_v1 is True
    server = ray.remote(ScriptedLLMServer).remote(RULES)
    balancer = get_router_handle(servers={"scripted-llm:0": server})
    outputs = submit(config, train_file, LLMServerClient(config, load_balancer_handle=balancer))

    by_end: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for out in outputs.values():
        extra = out["extra"]
        by_end.setdefault((extra["codegym_gym"], extra["codegym_ended"]), []).append(out)
        # every response is non-empty, ends on a model token (or is the single masked EOS), reward on its last token
        assert out["responses"] and len(out["responses"]) == len(out["response_mask"]) == len(out["rm_scores"])
        assert out["rm_scores"][-1] == extra["codegym_reward"] and sum(out["rm_scores"]) == extra["codegym_reward"]
        assert out["response_mask"][-1] == 1 or out["response_mask"] == [0]
        assert len(out["log_probs"]) == len(out["responses"])
    counts = {key: len(v) for key, v in by_end.items()}
    assert counts == {("probe", "done"): SESSIONS, ("probe", "empty_generation"): SESSIONS,
                      ("probe", "aborted"): SESSIONS, ("coin_vault", "response_length"): SESSIONS,
                      ("no_such_gym", "server_error"): SESSIONS}, counts

    for out in by_end[("probe", "done")]:
        assert out["extra"]["codegym_reward"] == 1.0 and out["num_turns"] == 4
        assert out["extra"]["reward_extra_info"]["codegym_scored_by"] == "gym"
    for out in by_end[("probe", "empty_generation")] + by_end[("probe", "aborted")]:
        assert out["extra"]["codegym_reward"] == 0.0 and out["extra"]["codegym_tool_calls"] == 1
    for out in by_end[("coin_vault", "response_length")]:
        assert len(out["responses"]) == RESPONSE_LENGTH and set(out["response_mask"]) == {1}
    for out in by_end[("no_such_gym", "server_error")]:
        assert out["response_mask"] == [0] and out["rm_scores"] == [0.0]
        info = out["extra"]["reward_extra_info"]
        assert info[SERVER_ERRORS_KEY] == 1 and info["codegym_scored_by"] == "server_error"
        assert "no_such_gym" in out["extra"]["codegym_error"]
    assert json.dumps([o["extra"]["codegym_gym"] for o in outputs.values()])  # plain, serialisable fields
