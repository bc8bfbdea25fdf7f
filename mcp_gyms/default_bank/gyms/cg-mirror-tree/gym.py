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


class MirrorHallGym(Gym):
    answer_type = list[int | None]
    answer_doc = "The answer is the mirrored tree in level order, null for a gap, trailing nulls left out."

    def setup(self, task: dict[str, Any]) -> None:
        self.vals, self.left, self.right = _parse_tree(task["root"])
        self.read = 0

    def observe(self) -> str:
        return f"The portraits are hidden; {self.read} numbers read so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> list[Any]:
        vals, left, right = _parse_tree(task["root"])
        out: list[Any] = []
        queue = [0] if vals else []
        while queue:
            node = queue.pop(0)
            if node == -1:
                out.append(None)
                continue
            out.append(vals[node])
            queue += [right[node], left[node]]
        while out and out[-1] is None:
            out.pop()
        return out

    def _check(self, portrait: int) -> None:
        if not 0 <= portrait < len(self.vals):
            raise IndexError(f"there is no portrait {portrait}")

    @tool
    def Top(self) -> int:
        """Return the id of the top portrait, or -1 when there is no tree.

        Returns:
            int: a portrait id, or -1.

        Example Output:
            0
        """
        return 0 if self.vals else -1

    @tool
    def BelowLeft(self, portrait: int) -> int:
        """The portrait below on the left (in the original, unmirrored tree).

        Args:
            portrait (int): a portrait id.

        Returns:
            int: a portrait id, or -1 when there is none.

        Example Output:
            1
        """
        self._check(portrait)
        return self.left[portrait]

    @tool
    def BelowRight(self, portrait: int) -> int:
        """The portrait below on the right (in the original, unmirrored tree).

        Args:
            portrait (int): a portrait id.

        Returns:
            int: a portrait id, or -1 when there is none.

        Example Output:
            -1
        """
        self._check(portrait)
        return self.right[portrait]

    @tool
    def Number(self, portrait: int) -> int:
        """Read a portrait's number.

        Args:
            portrait (int): a portrait id.

        Returns:
            int: its number.

        Example Output:
            7
        """
        self._check(portrait)
        self.read += 1
        return self.vals[portrait]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        top = int(call("Top"))
        out = []
        queue = [top] if top != -1 else []
        while queue:
            portrait = queue.pop(0)
            if portrait == -1:
                out.append(None)
                continue
            out.append(int(call("Number", portrait=portrait)))
            queue.append(int(call("BelowRight", portrait=portrait)))
            queue.append(int(call("BelowLeft", portrait=portrait)))
        while out and out[-1] is None:
            out.pop()
        call("Done", answer=out)
