"""CodeGym-MCP runtime: the gym contract, the bank, the sandbox, MCP serving and the shared client.

Glossary (one name per thing; the code follows it)
--------------------------------------------------

gym
    A class deriving from :class:`Gym`: hidden state built from a task, atomic tools, ``Observe`` and
    ``Done``. Gym code is untrusted and runs only in sandbox workers.
bank
    A folder of gyms (:class:`~mcp_gyms.bank.Bank`): per gym a :class:`~mcp_gyms.bank.GymRecord` (code,
    tools as :class:`~mcp_gyms.bank.ToolRecord`, verification) and its tasks.
task
    One :class:`~mcp_gyms.bank.TaskRecord` of a gym: ``id``, ``difficulty``, ``seed`` and ``config`` (the
    hidden input the gym is built from; never shown to clients). A request names a task by its index or
    its id (``task`` on the wire); ``EpisodeInfo.task_count`` (``tasks`` on the wire) counts a gym's tasks.
episode
    One play of one task from a fresh gym instance, up to ``Done``, the step budget or a close. Each layer
    holds it under its own name:

    - :class:`~mcp_gyms.episode.LocalEpisode`: the rules engine, gym code in this very process (trusted
      code and tests only);
    - :class:`~mcp_gyms.sandbox_worker.WorkerEpisode`: a local episode inside a sandbox worker, whose
      ``Done`` only records the answer;
    - :class:`~mcp_gyms.sandbox.SandboxEpisode`: the host's handle on an episode in a worker;
    - :class:`~mcp_gyms.episode_manager.ServedEpisode`: an open episode of a server (handle, task, idle
      time), kept by the :class:`~mcp_gyms.episode_manager.EpisodeManager`;
    - :class:`~mcp_gyms.client.RemoteEpisode`: a client's episode on a server (what eval and rl play).
handle
    The id a server mints for an episode; clients send it in ``_meta["codegym/episode"]``.
step
    One tool call on an episode, bad calls included; ``steps`` counts them against the step budget
    (``max_steps``, :data:`~mcp_gyms.constants.DEFAULT_MAX_STEPS` unless the gym says otherwise). Its
    outcome is a :class:`~mcp_gyms.outcome.StepOutcome`, the same type from the engine to the client (the
    ``structuredContent`` of a tool result on the wire).
terminated / truncated / done
    ``terminated``: ``Done`` was called. ``truncated``: the step budget was spent without ``Done``.
    ``done``: either. Every layer, eval's records included, uses them in this sense only.
error kind
    Why a call was bad (:class:`~mcp_gyms.constants.ErrorKind`: ``unknown_tool``, ``invalid_arguments``,
    ``tool_error``, ...), the ``error`` of a step outcome.
oracle
    The gym's verified tool-only solution of a task; ``codegym/oracle`` returns its calls
    (:class:`~mcp_gyms.protocol.OraclePlan`) for a client to replay on its own episode.
gym server
    One gym as one MCP server (:class:`~mcp_gyms.gym_server.GymServer`), carried over stdio
    (:mod:`mcp_gyms.stdio`) or, for a whole bank, over streamable HTTP
    (:class:`~mcp_gyms.http_service.HttpService`); ``codegym serve`` is :mod:`mcp_gyms.server`.
hot path
    Over HTTP, the one request every step makes (a 2026-07-28 ``tools/call`` naming its episode) is answered
    by :mod:`mcp_gyms.hot_path` without the MCP SDK's per-request machinery, with the SDK's own answer;
    every other request goes through the SDK.
"""

from .gym import Gym, GymSpec, tool

__all__ = ["Gym", "GymSpec", "tool"]
__version__ = "0.1.0"
