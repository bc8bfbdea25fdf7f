"""Island survey: count the islands of a hidden map by reading it cell by cell or in small blocks.

Original problem (CodeGym team): a rectangular map is made of land ('#') and water ('.') cells. An
island is a maximal group of land cells joined through shared edges (up, down, left, right; touching
corners do not join). Return the number of islands. The reference solution floods each island once.
"""

import json
from typing import Any

from mcp_gyms import Gym, tool

WINDOW = 3


class IslandSurveyGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of islands, an integer (0 if the map has no land)."

    def setup(self, task: dict[str, Any]) -> None:
        self.grid: list[str] = list(task["grid"])
        self.rows = len(self.grid)
        self.cols = len(self.grid[0]) if self.grid else 0
        self.known: list[list[str]] = [["?"] * self.cols for _ in range(self.rows)]
        self.read = 0

    def observe(self) -> str:
        land = sum(row.count("#") for row in self.known)
        lines = "\n".join("".join(row) for row in self.known)
        return (
            f"The map has {self.rows} rows and {self.cols} columns. Cells read so far: {self.read} of "
            f"{self.rows * self.cols} ({land} of them land).\n"
            f"Map so far ('#' land, '.' water, '?' not read yet):\n{lines}"
        )

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        grid = task["grid"]
        rows = len(grid)
        cols = len(grid[0]) if grid else 0
        seen = [[False] * cols for _ in range(rows)]
        islands = 0
        for r in range(rows):
            for c in range(cols):
                if grid[r][c] != "#" or seen[r][c]:
                    continue
                islands += 1
                seen[r][c] = True
                stack = [(r, c)]
                while stack:
                    y, x = stack.pop()
                    for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                        if 0 <= ny < rows and 0 <= nx < cols and grid[ny][nx] == "#" and not seen[ny][nx]:
                            seen[ny][nx] = True
                            stack.append((ny, nx))
        return islands

    def _check(self, row: int, col: int) -> None:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} is outside 0..{self.rows - 1}")
        if not 0 <= col < self.cols:
            raise IndexError(f"column {col} is outside 0..{self.cols - 1}")

    def _reveal(self, row: int, col: int) -> str:
        if self.known[row][col] == "?":
            self.known[row][col] = self.grid[row][col]
            self.read += 1
        return self.grid[row][col]

    @tool
    def Size(self) -> list[int]:
        """Return the size of the map.

        Returns:
            list[int]: [rows, columns]; both at least 1.

        Example Output:
            [12, 15]
        """
        return [self.rows, self.cols]

    @tool
    def Cell(self, row: int, col: int) -> str:
        """Read one cell of the map (rows and columns count from 0, row 0 at the top).

        Args:
            row (int): a row between 0 and rows - 1.
            col (int): a column between 0 and columns - 1.

        Returns:
            str: "land" or "water".

        Example Output:
            land
        """
        self._check(row, col)
        return "land" if self._reveal(row, col) == "#" else "water"

    @tool
    def Window(self, row: int, col: int) -> list[str]:
        """Read a block of up to 3 rows by 3 columns whose top-left corner is (row, col).

        The block is cut short at the bottom and right edges of the map.

        Args:
            row (int): the top row of the block, between 0 and rows - 1.
            col (int): the left column of the block, between 0 and columns - 1.

        Returns:
            list[str]: one string per row of the block, top to bottom; '#' is land and '.' is water.

        Example Output:
            ["#..", "##.", "..#"]
        """
        self._check(row, col)
        block = []
        for r in range(row, min(row + WINDOW, self.rows)):
            block.append("".join(self._reveal(r, c) for c in range(col, min(col + WINDOW, self.cols))))
        return block

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        rows, cols = json.loads(call("Size"))
        grid = [[""] * cols for _ in range(rows)]
        for top in range(0, rows, WINDOW):
            for left in range(0, cols, WINDOW):
                block = json.loads(call("Window", row=top, col=left))
                for dr, line in enumerate(block):
                    for dc, ch in enumerate(line):
                        grid[top + dr][left + dc] = ch
        islands = 0
        for r in range(rows):
            for c in range(cols):
                if grid[r][c] != "#":
                    continue
                islands += 1
                grid[r][c] = "x"
                stack = [(r, c)]
                while stack:
                    y, x = stack.pop()
                    for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                        if 0 <= ny < rows and 0 <= nx < cols and grid[ny][nx] == "#":
                            grid[ny][nx] = "x"
                            stack.append((ny, nx))
        call("Done", answer=islands)
