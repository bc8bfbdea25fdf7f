"""The GRPO launcher: veRL's PPO trainer with the CodeGym config, agent loop and gym servers.

``python -m rl.train [hydra overrides...]`` (what ``examples/train_grpo.sh`` runs):

1. composes ``rl/configs/codegym_grpo.yaml`` — veRL's ``ppo_trainer`` plus the paper's GRPO settings and a
   ``codegym`` section (:class:`rl.settings.LoopSettings`) — with the overrides;
2. checks it (:func:`finalize`): the ``codegym`` section against the loop's settings model, veRL's
   ``multi_turn`` settings against what the loop honours, and — for ``trainer.use_v1`` (veRL's default
   trainer path) — that ``transfer_queue`` is installed; the agent-loop YAML path is made absolute;
3. validates it with veRL's own ``validate_config``;
4. when ``codegym.servers`` is empty, initialises Ray exactly as veRL would and starts one gym server per
   Ray node (:func:`rl.servers.start_node_servers`); with a URL list it starts nothing;
5. hands over to veRL's ``run_ppo``.

:func:`compose` is steps 1-2 without a run (used by the tests and handy for ``--cfg job``-style checks).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from .settings import LoopSettings, SettingsError

__all__ = ["AGENT_LOOP_YAML", "CONFIG_DIR", "CONFIG_NAME", "REWARD_MODULE", "compose", "finalize", "main"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_NAME = "codegym_grpo"
AGENT_LOOP_YAML = CONFIG_DIR / "agent_loop.yaml"
#: How the config names the agent-loop YAML (veRL resolves it from the working directory or site-packages).
AGENT_LOOP_RELATIVE = "rl/configs/agent_loop.yaml"
#: veRL's ``pkg://`` form of the reward module.
REWARD_MODULE = "pkg://rl.reward"


def finalize(config: DictConfig) -> DictConfig:
    """Check what veRL would only find out on a worker, and pin the package's own paths. Returns ``config``
    (changed in place): the agent-loop YAML path, when it is this package's (or unset), becomes absolute;
    the reward function, when unset, becomes :mod:`rl.reward`.

    Raises:
        rl.settings.SettingsError: a bad ``codegym`` or ``multi_turn`` setting, or ``trainer.use_v1`` without
            ``transfer_queue`` installed.
    """
    from .agent_loop import TurnLimits

    with open_dict(config):
        agent = config.actor_rollout_ref.rollout.agent
        path = agent.get("agent_loop_config_path")
        if not path or path == AGENT_LOOP_RELATIVE:
            agent.agent_loop_config_path = str(AGENT_LOOP_YAML)
        reward_fn = config.reward.custom_reward_function
        if not reward_fn.get("path"):
            reward_fn.path = REWARD_MODULE
            reward_fn.name = "compute_score"
    LoopSettings.resolve(config)
    TurnLimits.from_rollout(config.actor_rollout_ref.rollout)
    if config.trainer.get("use_v1", True) and importlib.util.find_spec("transfer_queue") is None:
        raise SettingsError("trainer.use_v1=true (veRL's default trainer) needs the `transferqueue` package: "
                            "pip install 'codegym-mcp[rl]' (or set trainer.use_v1=false for the deprecated V0 "
                            "trainer)")
    return config


def compose(overrides: Sequence[str] = (), config_name: str = CONFIG_NAME) -> DictConfig:
    """The launch config with ``overrides`` applied and :func:`finalize` done; nothing is started."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = hydra_compose(config_name=config_name, overrides=list(overrides))
    return finalize(config)


def _init_ray(config: DictConfig) -> None:
    """``ray.init`` with the runtime environment veRL's ``run_ppo`` would use (it then skips its own init)."""
    import ray
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    if ray.is_initialized():
        return
    ray_init: dict[str, Any] = OmegaConf.to_container(config.ray_kwargs.get("ray_init", {}), resolve=True)  # type: ignore[assignment]
    runtime_env = OmegaConf.merge(get_ppo_ray_runtime_env(config), ray_init.get("runtime_env", {}) or {})
    ray_init["runtime_env"] = OmegaConf.to_container(runtime_env, resolve=True)
    ray.init(**ray_init)


def launch(config: DictConfig) -> None:
    """Validate, start the gym servers if needed, and run veRL's trainer (blocks until training ends)."""
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    finalize(config)
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    settings = LoopSettings.resolve(config)
    if not settings.servers:
        from .servers import start_node_servers

        _init_ray(config)
        urls = start_node_servers(settings.server, prefix=settings.server_actor_prefix)
        print(f"codegym: gym servers on {len(urls)} node(s): {', '.join(sorted(urls.values()))}", flush=True)
    if config.trainer.use_v1:
        run_ppo(config, task_runner_class=TaskRunnerV1)
    else:
        from verl.trainer.main_ppo_v0 import TaskRunner

        run_ppo(config, task_runner_class=TaskRunner)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rl.train [overrides...]``: compose, then :func:`launch`."""
    import hydra

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]

    @hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base=None)
    def _entry(config: DictConfig) -> None:
        launch(config)

    _entry()


if __name__ == "__main__":
    main()
