"""Run ``python -m verl.trainer.main_ppo ARGS...`` exactly as a user's command line would, up to GPU work.

Usage: ``python tests/main_ppo_until_gpu.py ARGS...`` (the ARGS a user gives ``main_ppo``). veRL's own
``main`` composes the config with Hydra, sets the device and runs ``validate_config``; where it would hand
the config to ``run_ppo`` (start Ray and the trainer on GPUs), this script instead does what veRL's workers
would do first with the config alone, then prints one JSON line and exits 0:

- which task runner veRL chose (``TaskRunnerV1`` for ``trainer.use_v1=true``) and that its ``transfer_queue``
  import works;
- the agent-loop YAML resolved as ``AgentLoopWorker`` resolves it, and its loop class imported;
- the reward function loaded as veRL's reward workers load it, and called on a row the gym did not judge;
- the rollout config built as veRL's dataclass, and the codegym loop's own settings checks.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import verl.trainer.main_ppo as main_ppo


def _until_gpu(config: Any, task_runner_class: Any) -> None:
    from hydra.utils import get_class
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.import_utils import resolve_config_path

    from rl.agent_loop import TurnLimits
    from rl.settings import LoopSettings

    runner = getattr(getattr(task_runner_class, "__ray_metadata__", None), "class_name", str(task_runner_class))
    if runner == "TaskRunnerV1":
        importlib.import_module("transfer_queue")
    rollout = config.actor_rollout_ref.rollout
    loops_file = resolve_config_path(rollout.agent.agent_loop_config_path)
    loops = {entry.name: get_class(entry._target_) for entry in OmegaConf.load(loops_file)}
    loop_class = loops[rollout.agent.default_agent_loop]
    assert issubclass(loop_class, AgentLoopBase)
    reward_fn = get_custom_reward_fn(config)
    reward = reward_fn(data_source="codegym", solution_str='<tool_call>{"name": "Done", "arguments": {"answer": 3}}'
                       '</tool_call>', ground_truth="3", extra_info={"codegym_ended": "server_error"})
    omega_conf_to_dataclass(rollout)
    TurnLimits.from_rollout(rollout)
    settings = LoopSettings.resolve(config)
    print(json.dumps({"runner": runner, "agent_loop_file": loops_file, "agent_loop": loop_class.__qualname__,
                      "reward_of_an_unjudged_row": reward,
                      "servers": settings.servers, "use_v1": bool(config.trainer.use_v1),
                      "max_parallel_calls": rollout.multi_turn.max_parallel_calls}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main_ppo.run_ppo = _until_gpu
    sys.argv = ["verl.trainer.main_ppo", *sys.argv[1:]]
    main_ppo.main()
