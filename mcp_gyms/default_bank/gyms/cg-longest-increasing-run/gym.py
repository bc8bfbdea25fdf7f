from typing import Any

from mcp_gyms import Gym, tool


class TrailClimbGym(Gym):
    answer_type = int
    answer_doc = "The answer is the length of the longest strictly rising stretch of markers."

    def setup(self, task: dict[str, Any]) -> None:
        self.nums: list[int] = list(task["nums"])
        self.inspected = 0

    def observe(self) -> str:
        return f"The trail has {len(self.nums)} markers; you have compared {self.inspected} pairs of neighbours."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        nums = task["nums"]
        if not nums:
            return 0
        best = current = 1
        for i in range(1, len(nums)):
            current = current + 1 if nums[i] > nums[i - 1] else 1
            best = max(best, current)
        return best

    @tool
    def Length(self) -> int:
        """Return how many markers the trail has.

        Returns:
            int: the number of markers.

        Example Output:
            14
        """
        return len(self.nums)

    @tool
    def Altitude(self, index: int) -> int:
        """Read the altitude at one marker.

        Args:
            index (int): a marker between 0 and Length() - 1.

        Returns:
            int: the altitude at that marker.

        Example Output:
            37
        """
        if not 0 <= index < len(self.nums):
            raise IndexError(f"marker {index} is outside 0..{len(self.nums) - 1}")
        return self.nums[index]

    @tool
    def Rises(self, index: int) -> bool:
        """Check whether the trail strictly rises into a marker from the marker before it.

        Args:
            index (int): a marker between 1 and Length() - 1.

        Returns:
            bool: true when altitude[index] > altitude[index - 1].

        Example Output:
            true
        """
        if not 1 <= index < len(self.nums):
            raise IndexError(f"marker {index} has no predecessor on the trail")
        self.inspected += 1
        return self.nums[index] > self.nums[index - 1]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        length = int(call("Length"))
        best = 1 if length else 0
        current = 1
        for index in range(1, length):
            current = current + 1 if call("Rises", index=index) == "true" else 1
            best = max(best, current)
        call("Done", answer=best)
