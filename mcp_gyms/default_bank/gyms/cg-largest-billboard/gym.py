from typing import Any

from mcp_gyms import Gym, tool


class BillboardFittingGym(Gym):
    answer_type = int
    answer_doc = "The answer is the largest rectangle area."

    def setup(self, task: dict[str, Any]) -> None:
        self.heights: list[int] = list(task["heights"])
        self.spans = 0

    def observe(self) -> str:
        return f"{len(self.heights)} buildings line the street; {self.spans} spans measured."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        heights, best = task["heights"], 0
        for i, height in enumerate(heights):
            left = i
            while left > 0 and heights[left - 1] >= height:
                left -= 1
            right = i
            while right + 1 < len(heights) and heights[right + 1] >= height:
                right += 1
            best = max(best, height * (right - left + 1))
        return best

    @tool
    def Count(self) -> int:
        """Return how many buildings there are.

        Returns:
            int: the number of buildings.

        Example Output:
            10
        """
        return len(self.heights)

    @tool
    def Height(self, index: int) -> int:
        """Read one building's height.

        Args:
            index (int): a building between 0 and Count() - 1.

        Returns:
            int: its height.

        Example Output:
            6
        """
        if not 0 <= index < len(self.heights):
            raise IndexError(f"building {index} is outside 0..{len(self.heights) - 1}")
        return self.heights[index]

    @tool
    def Span(self, index: int) -> int:
        """Measure the widest run of adjacent buildings containing this one in which every building is at least
        as tall as it.

        Args:
            index (int): a building between 0 and Count() - 1.

        Returns:
            int: the run's width (at least 1).

        Example Output:
            3
        """
        heights = self.heights
        if not 0 <= index < len(heights):
            raise IndexError(f"building {index} is outside 0..{len(heights) - 1}")
        self.spans += 1
        left = right = index
        while left > 0 and heights[left - 1] >= heights[index]:
            left -= 1
        while right + 1 < len(heights) and heights[right + 1] >= heights[index]:
            right += 1
        return right - left + 1

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        best = 0
        for index in range(count):
            best = max(best, int(call("Height", index=index)) * int(call("Span", index=index)))
        call("Done", answer=best)
