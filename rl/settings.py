"""The typed boundaries of ``rl``: loop settings and the per-row episode spec (no veRL import here).

Two things cross into the agent loop from outside, and both are validated here with pydantic:

- :class:`LoopSettings` — how the loop behaves and where the gym servers are. Resolved from, in order of
  precedence, the keyword arguments of the agent-loop YAML entry (``actor_rollout_ref.rollout.agent.
  agent_loop_config_path``), the ``codegym`` section of the trainer config (overridable on the command line
  as ``codegym.max_tool_calls=128``), then the defaults below.
- :class:`EpisodeSpec` — which episode one dataset row plays: gym, task and seed. It is read from the row's
  ``tools_kwargs["codegym"]["create_kwargs"]`` (veRL's channel for per-trajectory tool arguments, which
  ``RLHFDataset`` lifts out of ``extra_info``), falling back to ``extra_info`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "AGENT_NAME",
    "DATA_SOURCE",
    "TOOLS_KWARGS_KEY",
    "EpisodeSpec",
    "LoopSettings",
    "SettingsError",
    "ServerSettings",
    "cut_observation",
    "plain",
]

#: The name the agent loop is registered under (the dataset's ``agent_name`` column).
AGENT_NAME = "codegym_agent"
#: The ``data_source`` of exported rows (veRL's ``reward_fn_key``).
DATA_SOURCE = "codegym"
#: The key of this project's entry in a row's ``tools_kwargs``.
TOOLS_KWARGS_KEY = "codegym"


class SettingsError(ValueError):
    """Settings or a dataset row that the loop cannot work with; the message says what to fix."""


def plain(value: Any) -> Any:
    """``value`` with OmegaConf containers (and numpy scalars/arrays) turned into plain Python objects."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with the rl extra
        DictConfig = ListConfig = ()  # type: ignore[assignment]
    else:
        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def cut_observation(text: str, limit: int, side: str = "middle") -> str:
    """``text`` cut to ``limit`` characters on ``side`` (left, middle or right, as veRL's
    ``tool_response_truncate_side``), with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if side == "left":
        return f"...[{cut} characters cut]...{text[-limit:]}"
    if side == "right":
        return f"{text[:limit]}...[{cut} characters cut]..."
    head = limit // 2
    return f"{text[:head]}\n...[{cut} characters cut]...\n{text[len(text) - (limit - head):]}"


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(value)'}: {e['msg']}" for e in exc.errors(include_url=False))


class ServerSettings(BaseModel):
    """How the launcher starts one gym server per node (used only when ``servers`` is empty)."""

    model_config = ConfigDict(extra="forbid")

    bank: str | None = Field(None, description="bank folder served on every node (default: the bundled bank)")
    workers: int | None = Field(None, ge=1, description="sandbox worker processes per server (default: CPU count)")
    procs: int | None = Field(None, ge=1, description="server processes per node, one port each (default: CPU count)")
    max_episodes: int = Field(10_000, ge=1, description="cap on open episodes per server")
    idle_timeout_s: float = Field(
        3600.0, gt=0, description="close episodes idle this long (an episode idles while the policy generates)")
    time_limit_s: float = Field(3.0, gt=0, description="wall-time limit of one tool call in the sandbox")
    startup_timeout_s: float = Field(120.0, gt=0, description="how long to wait for /healthz after start")


class LoopSettings(BaseModel):
    """How :class:`rl.agent_loop.CodeGymAgentLoop` behaves. Every field has a default and can be overridden."""

    model_config = ConfigDict(extra="forbid")

    servers: list[str] = Field(
        default_factory=list,
        description="base URLs of gym servers (http://host:port) serving the same bank; each worker spreads new "
                    "episodes over them, least loaded first; empty: the gym server actor of this node")
    token: str | None = Field(None, description="bearer token for the gym servers (default: $CODEGYM_TOKEN)")
    max_tool_calls: int = Field(256, ge=1, description="tool calls per trajectory (bad calls included)")
    tool_parser: str | None = Field(None, description="veRL tool parser (default: rollout.multi_turn.format)")
    call_timeout_s: float = Field(60.0, gt=0, description="client-side timeout of one MCP request")
    start_retries: int = Field(2, ge=0, description="extra tries to start an episode when the server is busy")
    reconnect_retries: int = Field(
        3, ge=0, description="retries (with back-off) after a dropped link, per idempotent request "
                             "(tools/list, start, close) and per tool call that never left the worker")
    max_pooled_gyms: int = Field(
        512, ge=1, description="open gym connections kept per worker; idle ones beyond this are closed (LRU)")
    server_actor_prefix: str = Field("codegym-gym-server", description="Ray actor name prefix of node servers")
    server: ServerSettings = Field(default_factory=ServerSettings)

    @field_validator("servers", mode="before")
    @classmethod
    def _split_servers(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("servers")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"gym server URL {url!r} must start with http:// or https://")
        return [url.rstrip("/") for url in value]

    @classmethod
    def resolve(cls, trainer_config: Any = None, overrides: Mapping[str, Any] | None = None) -> LoopSettings:
        """Settings from the trainer config's ``codegym`` section, then ``overrides`` (the YAML kwargs).

        Raises:
            SettingsError: an unknown key or a bad value, naming it.
        """
        merged: dict[str, Any] = {}
        section = None
        if trainer_config is not None:
            getter = getattr(trainer_config, "get", None)
            section = getter("codegym", None) if getter else None
        for layer in (plain(section) or {}, plain(dict(overrides or {}))):
            if not isinstance(layer, dict):
                raise SettingsError(f"codegym settings must be a mapping, got {type(layer).__name__}")
            for key, value in layer.items():
                if value is None and key not in ("token", "tool_parser"):
                    continue  # null in YAML means "keep the default"
                if key == "server" and isinstance(value, dict):
                    merged["server"] = {**merged.get("server", {}), **value}
                else:
                    merged[key] = value
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise SettingsError(f"invalid codegym agent-loop settings: {_problems(exc)}") from None


class EpisodeSpec(BaseModel):
    """Which episode a dataset row plays."""

    model_config = ConfigDict(extra="ignore")

    gym: str = Field(min_length=1)
    task: int | str = Field(description="task id (str) or index (int)")
    seed: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EpisodeSpec:
        """The spec of a row as veRL hands it to ``AgentLoopBase.run`` (``tools_kwargs``, ``extra_info``).

        Raises:
            SettingsError: the row names no gym or task (e.g. a dataset not made by ``codegym export-verl``).
        """
        tools_kwargs = plain(row.get("tools_kwargs")) or {}
        extra_info = plain(row.get("extra_info")) or {}
        source: Any = None
        if isinstance(tools_kwargs, dict):
            entry = tools_kwargs.get(TOOLS_KWARGS_KEY) or {}
            source = entry.get("create_kwargs") if isinstance(entry, dict) else None
        if not source and isinstance(extra_info, dict) and extra_info.get("gym") is not None:
            source = {"gym": extra_info.get("gym"), "task": extra_info.get("task", extra_info.get("task_index")),
                      "seed": extra_info.get("seed")}
        if not source:
            raise SettingsError(
                "this dataset row names no gym episode: expected tools_kwargs['codegym']['create_kwargs'] = "
                "{gym, task, seed} (or extra_info.gym/task); make the dataset with `codegym export-verl`")
        try:
            return cls.model_validate(source)
        except ValidationError as exc:
            raise SettingsError(f"bad codegym episode spec {source!r}: {_problems(exc)}") from None


#: How a trajectory ended (``extra_fields["codegym_ended"]``).
Ended = Literal["done", "step_budget", "tool_call_cap", "response_length", "no_tool_call", "server_error"]
