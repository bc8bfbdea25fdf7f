from typing import Any

from mcp_gyms import Gym, tool


class ChessboardDiagonalsGym(Gym):
    answer_type = int
    answer_doc = "The answer is |sum of main diagonal - sum of anti-diagonal|."

    def setup(self, task: dict[str, Any]) -> None:
        self.matrix: list[list[int]] = [list(row) for row in task["matrix"]]
        self.seen: set[tuple[int, int]] = set()

    def observe(self) -> str:
        n = len(self.matrix)
        return f"The board is {n} x {n}; {len(self.seen)} cells uncovered so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        matrix = task["matrix"]
        n = len(matrix)
        return abs(sum(matrix[i][i] for i in range(n)) - sum(matrix[i][n - 1 - i] for i in range(n)))

    @tool
    def Size(self) -> int:
        """Return the side length of the square board.

        Returns:
            int: the number of rows (and of columns).

        Example Output:
            6
        """
        return len(self.matrix)

    @tool
    def Cell(self, row: int, col: int) -> int:
        """Uncover one cell of the board.

        Args:
            row (int): a row between 0 and Size() - 1.
            col (int): a column between 0 and Size() - 1.

        Returns:
            int: the number in that cell.

        Example Output:
            -4
        """
        n = len(self.matrix)
        if not (0 <= row < n and 0 <= col < n):
            raise IndexError(f"cell ({row}, {col}) is off the {n} x {n} board")
        self.seen.add((row, col))
        return self.matrix[row][col]

    @tool
    def Difference(self, a: int, b: int) -> int:
        """Return the absolute difference of two numbers.

        Args:
            a (int): a number.
            b (int): another number.

        Returns:
            int: |a - b|.

        Example Output:
            15
        """
        return abs(a - b)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        n = int(call("Size"))
        main = anti = 0
        for i in range(n):
            main += int(call("Cell", row=i, col=i))
            anti += int(call("Cell", row=i, col=n - 1 - i))
        call("Done", answer=int(call("Difference", a=main, b=anti)))
