"""Mountain peak: find the highest point of a hidden mountain range by probing it.

Original problem (CodeGym team): a list of distinct heights rises strictly and then falls strictly.
Return the greatest height. The reference solution is a binary search on the slope.
"""

from typing import Any

from mcp_gyms import Gym, tool


class MountainPeakGym(Gym):
    answer_type = int
    answer_doc = "The answer is the greatest height, an integer."

    def setup(self, task: dict[str, Any]) -> None:
        self.heights: list[int] = list(task["heights"])
        self.probes: list[int] = []

    def observe(self) -> str:
        shown = ", ".join(f"{i}:{self.heights[i]}" for i in sorted(set(self.probes))[-10:])
        return f"The range has {len(self.heights)} positions. Heights read so far (position:height): {shown or 'none'}."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        heights = task["heights"]
        lo, hi = 0, len(heights) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if heights[mid] < heights[mid + 1]:
                lo = mid + 1
            else:
                hi = mid
        return heights[lo]

    @tool
    def Length(self) -> int:
        """Return the number of positions in the mountain range.

        Returns:
            int: the number of positions, at least 1.

        Example Output:
            42
        """
        return len(self.heights)

    @tool
    def Height(self, position: int) -> int:
        """Read the height at one position (positions count from 0).

        Args:
            position (int): a position between 0 and Length() - 1.

        Returns:
            int: the height at that position.

        Example Output:
            917
        """
        if not 0 <= position < len(self.heights):
            raise IndexError(f"position {position} is outside 0..{len(self.heights) - 1}")
        self.probes.append(position)
        return self.heights[position]

    @tool
    def Rises(self, position: int) -> bool:
        """Tell whether the range goes up right after a position.

        Args:
            position (int): a position between 0 and Length() - 2.

        Returns:
            bool: true if the height at position + 1 is greater than the height at position.

        Example Output:
            true
        """
        if not 0 <= position < len(self.heights) - 1:
            raise IndexError(f"position {position} is outside 0..{len(self.heights) - 2}")
        return self.heights[position + 1] > self.heights[position]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        lo, hi = 0, int(call("Length")) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if call("Rises", position=mid) == "true":
                lo = mid + 1
            else:
                hi = mid
        call("Done", answer=int(call("Height", position=lo)))
