from typing import Any

from mcp_gyms import Gym, tool


class RaceResultsGym(Gym):
    answer_type = int
    answer_doc = "The answer is the k-th smallest finishing time."

    def setup(self, task: dict[str, Any]) -> None:
        self.nums: list[int] = list(task["nums"])
        self.k: int = int(task["k"])
        self.timed: set[int] = set()

    def observe(self) -> str:
        return f"{len(self.nums)} runners finished; you have read {len(self.timed)} times."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        return sorted(task["nums"])[task["k"] - 1]

    @tool
    def Runners(self) -> int:
        """Return how many runners finished.

        Returns:
            int: the number of runners.

        Example Output:
            14
        """
        return len(self.nums)

    @tool
    def Rank(self) -> int:
        """Return the rank k whose time is wanted.

        Returns:
            int: k, between 1 and Runners().

        Example Output:
            4
        """
        return self.k

    @tool
    def Time(self, runner: int) -> int:
        """Read one runner's finishing time.

        Args:
            runner (int): a runner between 0 and Runners() - 1.

        Returns:
            int: the finishing time.

        Example Output:
            63
        """
        if not 0 <= runner < len(self.nums):
            raise IndexError(f"runner {runner} is outside 0..{len(self.nums) - 1}")
        self.timed.add(runner)
        return self.nums[runner]

    @tool
    def FasterThan(self, time: int) -> int:
        """Count the runners whose time is strictly smaller than a given time.

        Args:
            time (int): a finishing time.

        Returns:
            int: how many runners beat it.

        Example Output:
            5
        """
        return sum(1 for value in self.nums if value < time)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        runners = int(call("Runners"))
        k = int(call("Rank"))
        times = sorted({int(call("Time", runner=runner)) for runner in range(runners)})
        answer = times[0]
        for time in times:  # the k-th smallest is the largest time with fewer than k runners before it
            if int(call("FasterThan", time=time)) < k:
                answer = time
            else:
                break
        call("Done", answer=answer)
