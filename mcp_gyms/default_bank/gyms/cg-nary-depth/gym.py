from typing import Any

from mcp_gyms import Gym, tool


def _parse_nary(values: list[Any]) -> list[list[int]]:
    """LeetCode's n-ary level order ([root, null, children of root..., null, ...]) -> child ids per node."""
    children: list[list[int]] = []
    if not values or values[0] is None:
        return children
    children.append([])
    queue, i = [0], 2
    while queue and i < len(values):
        parent = queue.pop(0)
        while i < len(values) and values[i] is not None:
            children.append([])
            children[parent].append(len(children) - 1)
            queue.append(len(children) - 1)
            i += 1
        i += 1
    return children


class OrgChartDepthGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of levels of the org chart."

    def setup(self, task: dict[str, Any]) -> None:
        self.children = _parse_nary(task["root"])
        self.lookups = 0

    def observe(self) -> str:
        return f"The org chart is hidden; {self.lookups} report lookups so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        children = _parse_nary(task["root"])
        depth, level = 0, [0] if children else []
        while level:
            depth += 1
            level = [c for person in level for c in children[person]]
        return depth

    def _check(self, person: int) -> None:
        if not 0 <= person < len(self.children):
            raise IndexError(f"there is no person {person}")

    @tool
    def Chief(self) -> int:
        """Return the id of the chief, or -1 when the company is empty.

        Returns:
            int: a person id, or -1.

        Example Output:
            0
        """
        return 0 if self.children else -1

    @tool
    def ReportCount(self, person: int) -> int:
        """Count a person's direct reports.

        Args:
            person (int): a person id.

        Returns:
            int: how many people report directly to them.

        Example Output:
            3
        """
        self._check(person)
        return len(self.children[person])

    @tool
    def Report(self, person: int, index: int) -> int:
        """Look up one direct report of a person.

        Args:
            person (int): a person id.
            index (int): which report, between 0 and ReportCount(person) - 1.

        Returns:
            int: the id of that report.

        Example Output:
            4
        """
        self._check(person)
        if not 0 <= index < len(self.children[person]):
            raise IndexError(f"person {person} has no report number {index}")
        self.lookups += 1
        return self.children[person][index]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        chief = int(call("Chief"))
        depth = 0
        level = [chief] if chief != -1 else []
        while level:
            depth += 1
            below = []
            for person in level:
                count = int(call("ReportCount", person=person))
                below += [int(call("Report", person=person, index=i)) for i in range(count)]
            level = below
        call("Done", answer=depth)
