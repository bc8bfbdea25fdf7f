from typing import Any

from mcp_gyms import Gym, tool


class WarehouseColumnsGym(Gym):
    answer_type = list[int]
    answer_doc = "The answer is the list of column totals, left to right."

    def setup(self, task: dict[str, Any]) -> None:
        self.grid: list[list[int]] = [list(row) for row in task["matrix"]]
        self.read = 0

    def observe(self) -> str:
        return f"A grid of bins is hidden; {self.read} bins read so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> list[int]:
        rows = task["matrix"]
        return [sum(row[c] for row in rows) for c in range(len(rows[0]))]

    @tool
    def Rows(self) -> int:
        """Return the number of rows.

        Returns:
            int: how many rows of bins.

        Example Output:
            3
        """
        return len(self.grid)

    @tool
    def Columns(self) -> int:
        """Return the number of columns.

        Returns:
            int: how many bins per row.

        Example Output:
            4
        """
        return len(self.grid[0])

    @tool
    def Bin(self, row: int, column: int) -> int:
        """Read the count of one bin.

        Args:
            row (int): a row between 0 and Rows() - 1.
            column (int): a column between 0 and Columns() - 1.

        Returns:
            int: the count in that bin.

        Example Output:
            -2
        """
        if not (0 <= row < len(self.grid) and 0 <= column < len(self.grid[0])):
            raise IndexError(f"there is no bin at row {row}, column {column}")
        self.read += 1
        return self.grid[row][column]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        rows, columns = int(call("Rows")), int(call("Columns"))
        totals = [0] * columns
        for r in range(rows):
            for c in range(columns):
                totals[c] += int(call("Bin", row=r, column=c))
        call("Done", answer=totals)
