from typing import Any

from mcp_gyms import Gym, tool


class MatchingWeightsGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of pairs whose sum equals the target."

    def setup(self, task: dict[str, Any]) -> None:
        self.nums: list[int] = list(task["nums"])
        self.target: int = int(task["target"])
        self.queries = 0

    def observe(self) -> str:
        return f"The row holds {len(self.nums)} weights; {self.queries} pair queries made so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        seen: dict[int, int] = {}
        pairs = 0
        for value in task["nums"]:
            pairs += seen.get(task["target"] - value, 0)
            seen[value] = seen.get(value, 0) + 1
        return pairs

    @tool
    def Count(self) -> int:
        """Return how many weights the row holds.

        Returns:
            int: the number of weights.

        Example Output:
            12
        """
        return len(self.nums)

    @tool
    def Target(self) -> int:
        """Return the target total.

        Returns:
            int: the sum a pair must reach.

        Example Output:
            10
        """
        return self.target

    @tool
    def Weight(self, index: int) -> int:
        """Read one weight.

        Args:
            index (int): a position between 0 and Count() - 1.

        Returns:
            int: the weight at that position.

        Example Output:
            6
        """
        if not 0 <= index < len(self.nums):
            raise IndexError(f"position {index} is outside 0..{len(self.nums) - 1}")
        return self.nums[index]

    @tool
    def PartnersBefore(self, index: int) -> int:
        """Count the weights before a position that add up to the target with the weight at that position.

        Args:
            index (int): a position between 0 and Count() - 1.

        Returns:
            int: how many earlier weights w satisfy w + weight[index] == target.

        Example Output:
            2
        """
        if not 0 <= index < len(self.nums):
            raise IndexError(f"position {index} is outside 0..{len(self.nums) - 1}")
        self.queries += 1
        need = self.target - self.nums[index]
        return sum(1 for value in self.nums[:index] if value == need)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        call("Target")
        total = 0
        for index in range(count):
            total += int(call("PartnersBefore", index=index))
        call("Done", answer=total)
