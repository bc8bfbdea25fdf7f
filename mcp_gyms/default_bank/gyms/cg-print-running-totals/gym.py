from typing import Any

from mcp_gyms import Gym, tool


class TillTapeGym(Gym):
    answer_type = str
    answer_doc = "The answer is the running totals, one per line, joined by newlines."

    def setup(self, task: dict[str, Any]) -> None:
        self.amounts: list[int] = list(task["nums"])
        self.read = 0

    def observe(self) -> str:
        return f"A list of amounts is hidden; {self.read} amounts read so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> str:
        lines, total = [], 0
        for value in task["nums"]:
            total += value
            lines.append(str(total))
        return "\n".join(lines)

    @tool
    def Count(self) -> int:
        """Return how many amounts the list holds.

        Returns:
            int: the number of amounts.

        Example Output:
            7
        """
        return len(self.amounts)

    @tool
    def Amount(self, index: int) -> int:
        """Read one amount.

        Args:
            index (int): a position between 0 and Count() - 1.

        Returns:
            int: the amount at that position.

        Example Output:
            -2
        """
        if not 0 <= index < len(self.amounts):
            raise IndexError(f"there is no amount at position {index}")
        self.read += 1
        return self.amounts[index]

    @tool
    def Add(self, total: int, amount: int) -> int:
        """Add an amount to a running total.

        Args:
            total (int): the running total so far.
            amount (int): the amount to add.

        Returns:
            int: total + amount.

        Example Output:
            8
        """
        return total + amount

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        total, lines = 0, []
        for index in range(count):
            total = int(call("Add", total=total, amount=int(call("Amount", index=index))))
            lines.append(str(total))
        call("Done", answer="\n".join(lines))
