"""The launch config composes with veRL's Hydra config (no training run); the fallback reward; settings."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rl.reward import REWARD_EXTRA_KEYS, SERVER_ERRORS_KEY, compute_score
from rl.settings import EpisodeSpec, LoopSettings, ServerSettings, SettingsError
from rl.testing import hermes_call

HAS_VERL = importlib.util.find_spec("verl") is not None
needs_verl = pytest.mark.skipif(not HAS_VERL, reason="needs the rl extra (verl 0.9.1); `make test` installs it")
ROOT = Path(__file__).resolve().parents[1]


# --- veRL's reward function for a row without a loop verdict (no veRL needed) ------------------------------
def test_reward_function_returns_the_gym_verdict() -> None:
    text = hermes_call("Done", {"answer": 3})
    result = compute_score("codegym", text, "4", {"codegym_reward": 1.0, "codegym_tool_calls": 5})
    assert (result["score"], result["codegym_scored_by"], result["codegym_tool_calls"]) == (1.0, "gym", 5)
    assert tuple(result) == REWARD_EXTRA_KEYS


@pytest.mark.parametrize("text", [hermes_call("Done", {"answer": 3}), "the answer is 3", ""])
def test_reward_function_never_matches_text_against_the_answer(text: str) -> None:
    # a trajectory the gym could not judge scores 0, even when its text names the right answer
    result = compute_score("codegym", text, "3", {"codegym_ended": "server_error"})
    assert (result["score"], result["codegym_scored_by"], result[SERVER_ERRORS_KEY]) == (0.0, "unjudged", 1)
    assert compute_score("gsm8k", text, "3")["score"] == 0.0
    assert compute_score("codegym", text, "3", {"codegym_reward": "not a number"})["score"] == 0.0


# --- settings --------------------------------------------------------------------------------------------
def test_settings_layers_and_errors() -> None:
    config = {"codegym": {"servers": "http://a:1, http://b:2/", "max_tool_calls": 100, "server": {"workers": 4}}}
    settings = LoopSettings.resolve(config, {"max_tool_calls": 7, "server": {"time_limit_s": 9}})
    assert settings.servers == ["http://a:1", "http://b:2"] and settings.max_tool_calls == 7
    assert (settings.server.workers, settings.server.time_limit_s) == (4, 9)
    assert LoopSettings.resolve(None).max_tool_calls == 256
    with pytest.raises(SettingsError, match="must start with http"):
        LoopSettings.resolve(None, {"servers": ["a:1"]})
    with pytest.raises(SettingsError, match="typo"):
        LoopSettings.resolve({"codegym": {"typo": 1}})
    with pytest.raises(SettingsError, match="names no gym episode"):
        EpisodeSpec.from_row({"extra_info": {"index": 3}})
    assert EpisodeSpec.from_row({"extra_info": {"gym": "g", "task": 2}}) == EpisodeSpec(gym="g", task=2)


def test_server_process_command_and_a_failed_start(tmp_path: Path) -> None:
    from rl.servers import GymServerProcess, ServerStartError

    process = GymServerProcess(ServerSettings(bank=str(tmp_path / "missing"), workers=2, time_limit_s=1.5,
                                              startup_timeout_s=30))
    command = process.command()
    assert command[1:4] == ["-m", "mcp_gyms.server", "--http"] and "--port" in command
    assert command[command.index("--bank") + 1] == str(tmp_path / "missing")
    assert command[command.index("--time-limit") + 1] == "1.5"
    assert command[command.index("--idle-timeout") + 1] == "3600.0"  # long rollouts: an hour idle between turns
    from rl.train import compose

    if HAS_VERL:  # the training config sets the server's idle timeout, the call timeout and the reconnections
        settings = LoopSettings.resolve(compose(["codegym.server.idle_timeout_s=7200", "codegym.call_timeout_s=90",
                                                 "codegym.reconnect_retries=5"]))
        assert (settings.server.idle_timeout_s, settings.call_timeout_s, settings.reconnect_retries) == (7200, 90, 5)
        assert GymServerProcess(settings.server).command()[command.index("--idle-timeout") + 1] == "7200.0"
    with pytest.raises(ServerStartError, match="not a bank"):
        process.start()


# --- the Hydra config ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def config():
    from rl.train import compose

    return compose()


@needs_verl
def test_paper_defaults(config) -> None:  # noqa: ANN001
    actor, rollout = config.actor_rollout_ref.actor, config.actor_rollout_ref.rollout
    assert config.algorithm.adv_estimator == "grpo"
    assert (config.data.train_batch_size, rollout.n) == (512, 8)
    assert (actor.optim.lr, actor.optim.lr_warmup_steps, list(actor.optim.betas), actor.optim.weight_decay) == (
        1e-6, 5, [0.9, 0.95], 0.1)
    assert (actor.use_kl_loss, actor.kl_loss_coef, config.algorithm.use_kl_in_reward) == (False, 0.0, False)
    assert (actor.clip_ratio, actor.clip_ratio_low, actor.clip_ratio_high, actor.grad_clip) == (0.2, 0.2, 0.2, 1.0)
    assert rollout.temperature == 1.0
    assert (rollout.prompt_length, rollout.response_length) == (5120, 24576)
    assert LoopSettings.resolve(config).max_tool_calls == 256
    assert rollout.agent.default_agent_loop == "codegym_agent"
    assert Path(rollout.agent.agent_loop_config_path) == ROOT / "rl" / "configs" / "agent_loop.yaml"
    assert config.reward.custom_reward_function.path == "pkg://rl.reward"
    assert config.trainer.use_v1 is True  # veRL's default trainer path, stated


@needs_verl
def test_config_validates_with_verl(config) -> None:  # noqa: ANN001
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.workers.config import RolloutConfig

    with pytest.warns(UserWarning, match="critic"):
        use_critic = need_critic(config)
    assert not use_critic and not need_reference_policy(config)  # GRPO, no KL: no critic, no reference model
    validate_config(config=config, use_reference_policy=False, use_critic=False)
    rollout = omega_conf_to_dataclass(config.actor_rollout_ref.rollout)
    assert isinstance(rollout, RolloutConfig) and rollout.multi_turn.format == "hermes"
    omega_conf_to_dataclass(config.algorithm)
    omega_conf_to_dataclass(config.actor_rollout_ref.actor)


@needs_verl
def test_every_default_is_overridable() -> None:
    from rl.train import compose

    config = compose(["data.train_batch_size=16", "actor_rollout_ref.rollout.n=2", "actor_rollout_ref.actor.optim.lr=3e-6",
                      "actor_rollout_ref.actor.optim.betas=[0.9,0.99]", "data.max_response_length=4096",
                      "codegym.max_tool_calls=32", "codegym.servers=[http://10.0.0.1:8000]",
                      "actor_rollout_ref.rollout.agent.agent_loop_config_path=/elsewhere/loops.yaml"])
    assert (config.data.train_batch_size, config.actor_rollout_ref.rollout.n) == (16, 2)
    assert config.actor_rollout_ref.actor.optim.lr == 3e-6
    assert config.actor_rollout_ref.rollout.response_length == 4096  # follows data.max_response_length
    settings = LoopSettings.resolve(config)
    assert (settings.max_tool_calls, settings.servers) == (32, ["http://10.0.0.1:8000"])
    assert config.actor_rollout_ref.rollout.agent.agent_loop_config_path == "/elsewhere/loops.yaml"
    with pytest.raises(SettingsError, match="max_tool_calls"):
        compose(["codegym.max_tool_calls=0"])


@needs_verl
def test_the_default_v1_trainer_needs_transfer_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util as util

    from rl.train import compose

    real = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "transfer_queue" else real(name, *a))
    with pytest.raises(SettingsError, match="needs the `transferqueue` package"):
        compose()
    assert compose(["trainer.use_v1=false"]).trainer.use_v1 is False  # the deprecated V0 trainer does not


@needs_verl
def test_agent_loop_yaml_instantiates_the_loop(config) -> None:  # noqa: ANN001
    from hydra.utils import get_class
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase

    entries = OmegaConf.load(config.actor_rollout_ref.rollout.agent.agent_loop_config_path)
    (entry,) = entries
    assert entry.name == config.actor_rollout_ref.rollout.agent.default_agent_loop
    assert issubclass(get_class(entry._target_), AgentLoopBase)


@needs_verl
def test_example_script_composes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "DATA_DIR": str(tmp_path / "data"), "MODEL": "/models/m",
           "GYM_SERVERS": "http://127.0.0.1:8000,http://127.0.0.1:8001", "GPUS_PER_NODE": "4"}
    done = subprocess.run(["bash", str(ROOT / "examples" / "train_grpo.sh"), "--cfg", "job",
                           "data.train_batch_size=8"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "data" / "train.parquet").is_file()  # exported first
    from omegaconf import OmegaConf

    lines = done.stdout.splitlines()
    first_key = next(i for i, line in enumerate(lines) if re.match(r"^[A-Za-z_]+:", line))  # after the export lines
    printed = OmegaConf.create("\n".join(lines[first_key:]))
    assert printed.data.train_batch_size == 8 and printed.data.train_files == str(tmp_path / "data" / "train.parquet")
    assert printed.actor_rollout_ref.model.path == "/models/m" and printed.trainer.n_gpus_per_node == 4
    assert list(printed.codegym.servers) == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    assert printed.algorithm.adv_estimator == "grpo"


# --- one gym server per Ray node, found by the agent loops of that node ---------------------------------
@needs_verl
def test_node_servers_on_ray_are_found_by_workers() -> None:
    import ray

    from rl.servers import start_node_servers

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="codegym-test")
    try:
        urls = start_node_servers(ServerSettings(workers=1))
        assert len(urls) == 1 and next(iter(urls.values())).startswith("http://127.0.0.1:")

        @ray.remote
        class Worker:  # stands in for a veRL agent-loop worker: same lookup, same node
            async def tools(self, settings: dict) -> tuple[str, list[str]]:
                from rl.gyms import close_all, server_for

                server = await server_for(LoopSettings.model_validate(settings))
                names = [t["name"] for t in await server.tools("coin_vault")]
                await close_all()
                return server.base_url, names

        base_url, names = ray.get(Worker.remote().tools.remote({}), timeout=120)
        assert base_url == next(iter(urls.values())) and names[0] == "Observe" and names[-1] == "Done"
        # plain `main_ppo` (no launcher): the first worker on a node that finds no server actor starts one
        auto = {"server_actor_prefix": "codegym-auto", "server": {"workers": 1}}
        base_url, names = ray.get(Worker.remote().tools.remote(auto), timeout=180)
        assert base_url != next(iter(urls.values())) and names[0] == "Observe"
        assert ray.get_actor(f"codegym-auto-{next(iter(urls))}") is not None
    finally:
        ray.shutdown()


# --- veRL's own entry point, config alone: `python -m verl.trainer.main_ppo --config-path ... --config-name` -----
def _main_ppo(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """veRL's ``main_ppo`` with a user's arguments, up to where it would start Ray on GPUs (Hydra's run folder
    goes to a temporary folder instead of ./outputs)."""
    import tempfile

    with tempfile.TemporaryDirectory() as run_dir:
        return subprocess.run([sys.executable, str(ROOT / "tests" / "main_ppo_until_gpu.py"),
                               "--config-path", str(ROOT / "rl" / "configs"), "--config-name", "codegym_grpo", *args,
                               f"hydra.run.dir={run_dir}"], cwd=cwd, capture_output=True, text=True, timeout=240)


@needs_verl
def test_plain_main_ppo_composes_validates_and_registers_by_config_alone() -> None:
    done = _main_ppo("codegym.servers=[http://10.0.0.5:8000]", "data.train_batch_size=64")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[validate_config] All configuration checks passed successfully!" in done.stdout
    import json

    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["runner"] == "TaskRunnerV1" and seen["use_v1"] is True  # veRL's default trainer path
    assert Path(seen["agent_loop_file"]) == ROOT / "rl" / "configs" / "agent_loop.yaml"
    assert seen["agent_loop"] == "CodeGymAgentLoop" and seen["servers"] == ["http://10.0.0.5:8000"]
    reward = seen["reward_of_an_unjudged_row"]  # the project's reward function, never the text's answer
    assert (reward["score"], reward["codegym_scored_by"], reward["codegym/server_errors"]) == (0.0, "unjudged", 1)


@needs_verl
def test_plain_main_ppo_refuses_what_the_loop_cannot_honour() -> None:
    done = _main_ppo("actor_rollout_ref.rollout.multi_turn.tool_config_path=/tools.yaml")
    assert done.returncode != 0 and "tool_config_path is set" in done.stderr
