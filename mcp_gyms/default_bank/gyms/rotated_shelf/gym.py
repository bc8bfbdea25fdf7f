"""Rotated shelf: find a book on a shelf whose sorted row of codes was rotated by an unknown amount.

Original problem (CodeGym team): a list of distinct book codes was sorted in increasing order and then
rotated (the last k codes moved, in order, to the front) for some unknown k. Given a target code, return
its position in the rotated list, or -1 if it is not on the shelf. The reference solution is a binary
search that, at each step, decides which half is still sorted.
"""

from typing import Any

from mcp_gyms import Gym, tool


class RotatedShelfGym(Gym):
    answer_type = int
    answer_doc = "The answer is the position (from 0) of the target code on the shelf, or -1 if it is absent."

    def setup(self, task: dict[str, Any]) -> None:
        self.codes: list[int] = list(task["codes"])
        self.target: int = int(task["target"])
        self.reads: list[int] = []

    def observe(self) -> str:
        shown = ", ".join(f"{i}:{self.codes[i]}" for i in self.reads[-10:])
        return (
            f"The shelf holds {len(self.codes)} books. Codes read so far: {len(self.reads)} "
            f"(most recent, position:code: {shown or 'none'})."
        )

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        codes, target = task["codes"], task["target"]
        lo, hi = 0, len(codes) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if codes[mid] == target:
                return mid
            if codes[lo] <= codes[mid]:  # the left half lo..mid is sorted
                if codes[lo] <= target < codes[mid]:
                    hi = mid - 1
                else:
                    lo = mid + 1
            else:  # the right half mid..hi is sorted
                if codes[mid] < target <= codes[hi]:
                    lo = mid + 1
                else:
                    hi = mid - 1
        return -1

    @tool
    def Size(self) -> int:
        """Return the number of books on the shelf.

        Returns:
            int: the number of books, at least 1.

        Example Output:
            120
        """
        return len(self.codes)

    @tool
    def Target(self) -> int:
        """Return the code of the book you are looking for.

        Returns:
            int: the target code (it may or may not be on the shelf).

        Example Output:
            40815
        """
        return self.target

    @tool
    def CodeAt(self, position: int) -> int:
        """Read the code of the book at one position (positions count from 0, left to right).

        Args:
            position (int): a position between 0 and Size() - 1.

        Returns:
            int: the book code at that position.

        Example Output:
            39012
        """
        if not 0 <= position < len(self.codes):
            raise IndexError(f"position {position} is outside 0..{len(self.codes) - 1}")
        if position not in self.reads:
            self.reads.append(position)
        return self.codes[position]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        size = int(call("Size"))
        target = int(call("Target"))
        seen: dict[int, int] = {}

        def code(position: int) -> int:
            if position not in seen:
                seen[position] = int(call("CodeAt", position=position))
            return seen[position]

        answer = -1
        lo, hi = 0, size - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if code(mid) == target:
                answer = mid
                break
            if code(lo) <= code(mid):
                if code(lo) <= target < code(mid):
                    hi = mid - 1
                else:
                    lo = mid + 1
            else:
                if code(mid) < target <= code(hi):
                    lo = mid + 1
                else:
                    hi = mid - 1
        call("Done", answer=answer)
