"""Trial then overwrite inside one episode: the rollback point is the state after the last good call, and
the gym's random generator (pickled in a packed form of its own) comes back exactly."""

from __future__ import annotations

import random
from typing import Any

from mcp_gyms import Gym, tool
from mcp_gyms.constants import ErrorKind
from mcp_gyms.episode import LocalEpisode


class Dice(Gym):
    """Roll dice; a roll can fail after it drew (the draw must then be undone)."""

    answer_type = int

    def setup(self, task: dict[str, Any]) -> None:
        self.rolls: list[int] = []
        self.other = _MyRandom(task["other"])  # a subclass of Random: pickled the default way

    def observe(self) -> str:
        return f"{len(self.rolls)} rolls"

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        return 0

    @tool
    def Roll(self, fail: bool = False) -> int:
        """Roll a die.

        Args:
            fail: raise after drawing.
        """
        value = self.rng.randint(1, 6)
        self.rng.gauss(0, 1)  # leaves a cached second normal draw in the state
        self.rolls.append(value + self.other.randint(0, 0))
        if fail:
            raise ValueError("the die fell off the table")
        return value

    @staticmethod
    def solve(call: Any) -> None:
        call("Done", answer=0)


class _MyRandom(random.Random):
    pass


def test_failed_calls_roll_back_to_the_last_good_call() -> None:
    ep = LocalEpisode(Dice, {"other": 3}, seed=11)
    twin = LocalEpisode(Dice, {"other": 3}, seed=11)  # the same episode without the failing calls
    for fail in (False, True, True, False, True, False):
        result = ep.call("Roll", {"fail": fail})
        if fail:
            assert result.error == ErrorKind.TOOL_ERROR and "state is unchanged" in result.observation
        else:
            assert result.error is None
            assert result.observation == twin.call("Roll", {}).observation
        assert ep.gym.rolls == twin.gym.rolls
        assert ep.gym.rng.getstate() == twin.gym.rng.getstate()  # the cached gauss draw included
        assert type(ep.gym.other) is _MyRandom and ep.gym.other.getstate() == twin.gym.other.getstate()
    assert ep.gym.rng.random() == twin.gym.rng.random()
