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


class OrchardLeftFruitGym(Gym):
    answer_type = int
    answer_doc = "The answer is the total weight at the left tips."

    def setup(self, task: dict[str, Any]) -> None:
        self.vals, self.left, self.right = _parse_tree(task["root"])
        self.weighed = 0

    def observe(self) -> str:
        return f"The orchard tree is hidden; {self.weighed} fruits weighed so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        vals, left, right = _parse_tree(task["root"])
        total = 0
        for node in range(len(vals)):
            child = left[node]
            if child != -1 and left[child] == -1 and right[child] == -1:
                total += vals[child]
        return total

    def _check(self, point: int) -> None:
        if not 0 <= point < len(self.vals):
            raise IndexError(f"there is no branch point {point}")

    @tool
    def Trunk(self) -> int:
        """Return the id of the trunk's branch point, or -1 when there is no tree.

        Returns:
            int: a point id, or -1.

        Example Output:
            0
        """
        return 0 if self.vals else -1

    @tool
    def LeftBranch(self, point: int) -> int:
        """Follow the left branch of a point.

        Args:
            point (int): a point id.

        Returns:
            int: the id of the point on the left branch, or -1 when there is none.

        Example Output:
            1
        """
        self._check(point)
        return self.left[point]

    @tool
    def RightBranch(self, point: int) -> int:
        """Follow the right branch of a point.

        Args:
            point (int): a point id.

        Returns:
            int: the id of the point on the right branch, or -1 when there is none.

        Example Output:
            2
        """
        self._check(point)
        return self.right[point]

    @tool
    def Weigh(self, point: int) -> int:
        """Weigh the fruit at a point.

        Args:
            point (int): a point id.

        Returns:
            int: the weight.

        Example Output:
            9
        """
        self._check(point)
        self.weighed += 1
        return self.vals[point]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        trunk = int(call("Trunk"))
        total = 0
        stack = [(trunk, False)] if trunk != -1 else []
        while stack:
            point, is_left = stack.pop()
            left = int(call("LeftBranch", point=point))
            right = int(call("RightBranch", point=point))
            if left == -1 and right == -1:
                if is_left:
                    total += int(call("Weigh", point=point))
                continue
            if left != -1:
                stack.append((left, True))
            if right != -1:
                stack.append((right, False))
        call("Done", answer=total)
