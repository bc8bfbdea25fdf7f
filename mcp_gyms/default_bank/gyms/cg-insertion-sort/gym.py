from typing import Any

from mcp_gyms import Gym, tool


class BookshelfSortGym(Gym):
    answer_type = list[int]
    answer_doc = "The answer is the list of spine numbers after sorting, left to right."

    def setup(self, task: dict[str, Any]) -> None:
        self.books: list[int] = list(task["nums"])
        self.swaps = 0

    def observe(self) -> str:
        return f"The shelf holds {len(self.books)} books; {self.swaps} swaps made so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> list[int]:
        return sorted(task["nums"])

    def _check(self, position: int) -> None:
        if not 0 <= position < len(self.books) - 1:
            raise IndexError(f"position {position} has no right neighbour")

    @tool
    def Count(self) -> int:
        """Return how many books the shelf holds.

        Returns:
            int: the number of books.

        Example Output:
            6
        """
        return len(self.books)

    @tool
    def OutOfOrder(self, position: int) -> bool:
        """Tell whether the book at a position has a larger number than its right neighbour.

        Args:
            position (int): a position between 0 and Count() - 2.

        Returns:
            bool: true when books[position] > books[position + 1].

        Example Output:
            true
        """
        self._check(position)
        return self.books[position] > self.books[position + 1]

    @tool
    def SwapWithRight(self, position: int) -> str:
        """Swap the book at a position with its right neighbour.

        Args:
            position (int): a position between 0 and Count() - 2.

        Returns:
            str: a confirmation.

        Example Output:
            "swapped 2 and 3"
        """
        self._check(position)
        self.books[position], self.books[position + 1] = self.books[position + 1], self.books[position]
        self.swaps += 1
        return f"swapped {position} and {position + 1}"

    @tool
    def Spine(self, position: int) -> int:
        """Read the spine number of the book at a position.

        Args:
            position (int): a position between 0 and Count() - 1.

        Returns:
            int: the spine number.

        Example Output:
            12
        """
        if not 0 <= position < len(self.books):
            raise IndexError(f"there is no book at position {position}")
        return self.books[position]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        for i in range(1, count):
            j = i - 1
            while j >= 0 and call("OutOfOrder", position=j) == "true":
                call("SwapWithRight", position=j)
                j -= 1
        call("Done", answer=[int(call("Spine", position=p)) for p in range(count)])
