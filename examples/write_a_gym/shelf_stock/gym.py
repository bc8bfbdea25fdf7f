"""Shelf stock: add up the stock of the shelves whose label starts with a given letter.

Original problem (written for this walkthrough): given a list of shelves, each ``{"label": str,
"stock": int}``, and a letter, return the total stock of the shelves whose label starts with that letter.
"""

from typing import Any

from mcp_gyms import Gym, tool


class ShelfStockGym(Gym):
    answer_type = int
    answer_doc = "The answer is the total stock, an integer (0 when no label starts with the letter)."

    def setup(self, task: dict[str, Any]) -> None:
        self.shelves: list[dict[str, Any]] = [dict(s) for s in task["shelves"]]
        self.letter: str = task["letter"]
        self.read: set[int] = set()

    def observe(self) -> str:  # a partial view: the letter and how much was read, never the shelves
        return (f"Letter: {self.letter}. The warehouse has {len(self.shelves)} shelves; "
                f"you have looked at {len(self.read)} of them.")

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:  # the original solution
        return sum(s["stock"] for s in task["shelves"] if s["label"].startswith(task["letter"]))

    @tool
    def ShelfCount(self) -> int:
        """Return how many shelves the warehouse has.

        Returns:
            int: the number of shelves, at least 1.

        Example Output:
            7
        """
        return len(self.shelves)

    @tool
    def Label(self, shelf: int) -> str:
        """Read the label of one shelf (shelves count from 0).

        Args:
            shelf (int): a shelf number between 0 and ShelfCount() - 1.

        Returns:
            str: the shelf's label.

        Example Output:
            "apples"
        """
        self._check(shelf)
        self.read.add(shelf)
        return self.shelves[shelf]["label"]

    @tool
    def Stock(self, shelf: int) -> int:
        """Read how many items one shelf holds.

        Args:
            shelf (int): a shelf number between 0 and ShelfCount() - 1.

        Returns:
            int: the stock of that shelf.

        Example Output:
            12
        """
        self._check(shelf)
        self.read.add(shelf)
        return self.shelves[shelf]["stock"]

    def _check(self, shelf: int) -> None:
        if not 0 <= shelf < len(self.shelves):
            raise IndexError(f"shelf {shelf} is outside 0..{len(self.shelves) - 1}")

    @staticmethod
    def solve(call) -> None:  # the tool-only oracle: it sees observations (text) only
        text = call("Observe")
        letter = text.split("Letter: ", 1)[1][0]
        total = 0
        for shelf in range(int(call("ShelfCount"))):
            if call("Label", shelf=shelf).startswith(letter):
                total += int(call("Stock", shelf=shelf))
        call("Done", answer=total)
