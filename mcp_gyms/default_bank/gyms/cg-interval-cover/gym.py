from typing import Any

from mcp_gyms import Gym, tool


class PaintedFenceGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of metres painted at least once."

    def setup(self, task: dict[str, Any]) -> None:
        self.stretches: list[tuple[int, int]] = sorted((int(a), int(b)) for a, b in task["intervals"])
        self.read = 0

    def observe(self) -> str:
        return f"{len(self.stretches)} painted stretches, sorted by start; {self.read} read so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        total, reach = 0, None
        for start, end in sorted(task["intervals"]):
            if reach is None or start > reach:
                total += end - start
                reach = end
            elif end > reach:
                total += end - reach
                reach = end
        return total

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self.stretches):
            raise IndexError(f"there is no stretch {index}")

    @tool
    def Count(self) -> int:
        """Return how many stretches were painted (they are numbered by start, from 0).

        Returns:
            int: the number of stretches.

        Example Output:
            3
        """
        return len(self.stretches)

    @tool
    def Start(self, index: int) -> int:
        """Where a stretch starts (stretches are numbered in order of their start).

        Args:
            index (int): a stretch between 0 and Count() - 1.

        Returns:
            int: its start, in metres.

        Example Output:
            2
        """
        self._check(index)
        self.read += 1
        return self.stretches[index][0]

    @tool
    def End(self, index: int) -> int:
        """Where a stretch ends.

        Args:
            index (int): a stretch between 0 and Count() - 1.

        Returns:
            int: its end, in metres.

        Example Output:
            6
        """
        self._check(index)
        self.read += 1
        return self.stretches[index][1]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        total, reach = 0, None
        for index in range(int(call("Count"))):
            start, end = int(call("Start", index=index)), int(call("End", index=index))
            if reach is None or start > reach:
                total += end - start
                reach = end
            elif end > reach:
                total += end - reach
                reach = end
        call("Done", answer=total)
