from typing import Any

from mcp_gyms import Gym, tool


class SkylineShadowsGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of towers with a taller tower to their east."

    def setup(self, task: dict[str, Any]) -> None:
        self.nums: list[int] = list(task["nums"])
        self.surveys = 0

    def observe(self) -> str:
        return f"{len(self.nums)} towers stand in the row; {self.surveys} eastward surveys made."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        nums = task["nums"]
        return sum(1 for i, value in enumerate(nums) if any(other > value for other in nums[i + 1:]))

    @tool
    def Count(self) -> int:
        """Return how many towers stand in the row.

        Returns:
            int: the number of towers.

        Example Output:
            16
        """
        return len(self.nums)

    @tool
    def Height(self, index: int) -> int:
        """Read one tower's height (tower 0 is the westernmost).

        Args:
            index (int): a tower between 0 and Count() - 1.

        Returns:
            int: its height.

        Example Output:
            42
        """
        if not 0 <= index < len(self.nums):
            raise IndexError(f"tower {index} is outside 0..{len(self.nums) - 1}")
        return self.nums[index]

    @tool
    def TallestFrom(self, index: int) -> int:
        """Survey eastwards: the tallest height among the towers from this one to the eastern end.

        Args:
            index (int): a tower between 0 and Count() - 1.

        Returns:
            int: max(height[index:]).

        Example Output:
            57
        """
        if not 0 <= index < len(self.nums):
            raise IndexError(f"tower {index} is outside 0..{len(self.nums) - 1}")
        self.surveys += 1
        return max(self.nums[index:])

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        total = 0
        for index in range(count - 1):
            if int(call("TallestFrom", index=index + 1)) > int(call("Height", index=index)):
                total += 1
        call("Done", answer=total)
