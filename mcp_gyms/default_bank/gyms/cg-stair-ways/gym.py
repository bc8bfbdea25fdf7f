from typing import Any

from mcp_gyms import Gym, tool


class StaircaseGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of ways to climb the staircase."

    def setup(self, task: dict[str, Any]) -> None:
        self.n: int = int(task["n"])
        self.max_step: int = int(task["max_step"])
        self.ledger: list[int] = [1]

    def observe(self) -> str:
        return f"The ledger knows the number of ways for heights 0 to {len(self.ledger) - 1}."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        n, max_step = task["n"], task["max_step"]
        ways = [1] + [0] * n
        for height in range(1, n + 1):
            ways[height] = sum(ways[height - k] for k in range(1, max_step + 1) if height - k >= 0)
        return ways[n]

    @tool
    def Steps(self) -> int:
        """Return how many steps the staircase has.

        Returns:
            int: the height of the top.

        Example Output:
            12
        """
        return self.n

    @tool
    def MaxMove(self) -> int:
        """Return the largest number of steps one move may climb.

        Returns:
            int: the maximum move.

        Example Output:
            3
        """
        return self.max_step

    @tool
    def Extend(self) -> int:
        """Add the next height to the ledger: its number of ways is the sum of the ways of the heights one to
        MaxMove() steps below it.

        Returns:
            int: the height that was just added.

        Example Output:
            5
        """
        if len(self.ledger) > self.n:
            raise ValueError(f"the ledger already reaches the top (height {self.n})")
        height = len(self.ledger)
        self.ledger.append(sum(self.ledger[height - k] for k in range(1, self.max_step + 1) if height - k >= 0))
        return height

    @tool
    def Ways(self, height: int) -> int:
        """Read the ledger: the number of ways to reach a height.

        Args:
            height (int): a height already in the ledger.

        Returns:
            int: the number of ways to reach it.

        Example Output:
            274
        """
        if not 0 <= height < len(self.ledger):
            raise IndexError(f"the ledger covers heights 0..{len(self.ledger) - 1}")
        return self.ledger[height]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        n = int(call("Steps"))
        call("MaxMove")
        for _ in range(n):
            call("Extend")
        call("Done", answer=int(call("Ways", height=n)))
