from typing import Any

from mcp_gyms import Gym, tool


class BeadStringGym(Gym):
    answer_type = list[int]
    answer_doc = "The answer is the list of bead numbers from the last bead to the first."

    def setup(self, task: dict[str, Any]) -> None:
        self.beads: list[int] = list(task["head"])
        self.swaps = 0

    def observe(self) -> str:
        return f"A string of beads is hidden; {self.swaps} swaps made so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> list[int]:
        return list(reversed(task["head"]))

    @tool
    def Count(self) -> int:
        """Return how many beads the string holds.

        Returns:
            int: the number of beads.

        Example Output:
            6
        """
        return len(self.beads)

    @tool
    def Bead(self, position: int) -> int:
        """Read the number of the bead at a position (0 is the first bead).

        Args:
            position (int): a position between 0 and Count() - 1.

        Returns:
            int: the bead's number.

        Example Output:
            42
        """
        if not 0 <= position < len(self.beads):
            raise IndexError(f"there is no bead at position {position}")
        return self.beads[position]

    @tool
    def Swap(self, first: int, second: int) -> str:
        """Swap the beads at two positions.

        Args:
            first (int): one position.
            second (int): another position.

        Returns:
            str: a confirmation.

        Example Output:
            "swapped 0 and 5"
        """
        for position in (first, second):
            if not 0 <= position < len(self.beads):
                raise IndexError(f"there is no bead at position {position}")
        self.beads[first], self.beads[second] = self.beads[second], self.beads[first]
        self.swaps += 1
        return f"swapped {first} and {second}"

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        for left in range(count // 2):
            call("Swap", first=left, second=count - 1 - left)
        call("Done", answer=[int(call("Bead", position=p)) for p in range(count)])
