from math import gcd
from typing import Any

from mcp_gyms import Gym, tool


class TileCutterGym(Gym):
    answer_type = int
    answer_doc = "The answer is the greatest common divisor of all plank lengths."

    def setup(self, task: dict[str, Any]) -> None:
        self.nums: list[int] = list(task["nums"])
        self.measured: set[int] = set()

    def observe(self) -> str:
        return f"{len(self.nums)} planks wait to be cut; {len(self.measured)} of them measured."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        nums = task["nums"]
        result = nums[0]
        for value in nums[1:]:
            result = gcd(result, value)
        return result

    @tool
    def Count(self) -> int:
        """Return how many planks there are.

        Returns:
            int: the number of planks.

        Example Output:
            9
        """
        return len(self.nums)

    @tool
    def Plank(self, index: int) -> int:
        """Measure one plank.

        Args:
            index (int): a plank between 0 and Count() - 1.

        Returns:
            int: the plank's length.

        Example Output:
            84
        """
        if not 0 <= index < len(self.nums):
            raise IndexError(f"plank {index} is outside 0..{len(self.nums) - 1}")
        self.measured.add(index)
        return self.nums[index]

    @tool
    def Gcd(self, a: int, b: int) -> int:
        """Compute the greatest common divisor of two non-negative integers.

        Args:
            a (int): a non-negative integer.
            b (int): a non-negative integer.

        Returns:
            int: gcd(a, b).

        Example Output:
            12
        """
        if a < 0 or b < 0:
            raise ValueError("both numbers must be non-negative")
        return gcd(a, b)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        result = int(call("Plank", index=0))
        for index in range(1, count):
            result = int(call("Gcd", a=result, b=int(call("Plank", index=index))))
        call("Done", answer=result)
