"""The vocabulary shared by the wire protocol and the sandbox workers, defined once.

Standard library only: sandbox workers import it (through the episode engine) and must stay lean, so the
pydantic models of :mod:`mcp_gyms.protocol` live there and re-export these names as part of the contract.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DEFAULT_MAX_STEPS", "DIFFICULTIES", "Difficulty"]

#: A task's difficulty.
Difficulty = Literal["easy", "medium", "hard"]
#: The difficulties, easiest first.
DIFFICULTIES: tuple[Difficulty, ...] = ("easy", "medium", "hard")
#: The step budget of a gym that declares none (calls per episode, bad calls included).
DEFAULT_MAX_STEPS = 256
