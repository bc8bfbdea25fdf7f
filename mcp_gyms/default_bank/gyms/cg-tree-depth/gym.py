from typing import Any

from mcp_gyms import Gym, tool


def _parse_tree(values: list[Any]) -> tuple[list[Any], list[int], list[int]]:
    """Level order with nulls (LeetCode's form) -> node values, left and right child ids (-1: none)."""
    vals: list[Any] = []
    left: list[int] = []
    right: list[int] = []
    if not values or values[0] is None:
        return vals, left, right
    vals.append(values[0])
    left.append(-1)
    right.append(-1)
    queue, i = [0], 1
    while queue and i < len(values):
        node = queue.pop(0)
        for side in (left, right):
            if i < len(values) and values[i] is not None:
                vals.append(values[i])
                left.append(-1)
                right.append(-1)
                side[node] = len(vals) - 1
                queue.append(len(vals) - 1)
            i += 1
    return vals, left, right


class CaveDepthGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of chambers on the longest way down from the entrance."

    def setup(self, task: dict[str, Any]) -> None:
        self.vals, self.left, self.right = _parse_tree(task["root"])
        self.looked = 0

    def observe(self) -> str:
        return f"You have looked down {self.looked} passages so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        vals, left, right = _parse_tree(task["root"])
        if not vals:
            return 0
        depth, level = 0, [0]
        while level:
            depth += 1
            level = [c for n in level for c in (left[n], right[n]) if c != -1]
        return depth

    def _check(self, chamber: int) -> None:
        if not 0 <= chamber < len(self.vals):
            raise IndexError(f"there is no chamber {chamber}")

    @tool
    def Entrance(self) -> int:
        """Return the id of the entrance chamber, or -1 when there is no cave.

        Returns:
            int: a chamber id, or -1.

        Example Output:
            0
        """
        return 0 if self.vals else -1

    @tool
    def LeftPassage(self, chamber: int) -> int:
        """Look down the left passage of a chamber.

        Args:
            chamber (int): a chamber id.

        Returns:
            int: the id of the chamber below on the left, or -1 when there is none.

        Example Output:
            3
        """
        self._check(chamber)
        self.looked += 1
        return self.left[chamber]

    @tool
    def RightPassage(self, chamber: int) -> int:
        """Look down the right passage of a chamber.

        Args:
            chamber (int): a chamber id.

        Returns:
            int: the id of the chamber below on the right, or -1 when there is none.

        Example Output:
            -1
        """
        self._check(chamber)
        self.looked += 1
        return self.right[chamber]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        entrance = int(call("Entrance"))
        depth = 0
        level = [entrance] if entrance != -1 else []
        while level:
            depth += 1
            below = []
            for chamber in level:
                for side in ("LeftPassage", "RightPassage"):
                    child = int(call(side, chamber=chamber))
                    if child != -1:
                        below.append(child)
            level = below
        call("Done", answer=depth)
