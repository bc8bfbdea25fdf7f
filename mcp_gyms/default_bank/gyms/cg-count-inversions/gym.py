from typing import Any

from mcp_gyms import Gym, tool


class ShelfDisorderGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of out-of-order pairs of books."

    def setup(self, task: dict[str, Any]) -> None:
        self.nums: list[int] = list(task["nums"])
        self.counted: set[int] = set()

    def observe(self) -> str:
        return (f"The shelf holds {len(self.nums)} books; you have counted larger left neighbours for "
                f"{len(self.counted)} of them.")

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        nums = task["nums"]
        return sum(1 for j in range(len(nums)) for i in range(j) if nums[i] > nums[j])

    @tool
    def Count(self) -> int:
        """Return how many books stand on the shelf.

        Returns:
            int: the number of books.

        Example Output:
            11
        """
        return len(self.nums)

    @tool
    def Number(self, position: int) -> int:
        """Read the catalogue number of the book at a position (0 is the leftmost).

        Args:
            position (int): a position between 0 and Count() - 1.

        Returns:
            int: the book's catalogue number.

        Example Output:
            42
        """
        if not 0 <= position < len(self.nums):
            raise IndexError(f"position {position} is outside 0..{len(self.nums) - 1}")
        return self.nums[position]

    @tool
    def LargerOnLeft(self, position: int) -> int:
        """Count the books left of a position whose catalogue number is larger than that book's number.

        Args:
            position (int): a position between 0 and Count() - 1.

        Returns:
            int: how many books to the left carry a larger number.

        Example Output:
            3
        """
        if not 0 <= position < len(self.nums):
            raise IndexError(f"position {position} is outside 0..{len(self.nums) - 1}")
        self.counted.add(position)
        value = self.nums[position]
        return sum(1 for other in self.nums[:position] if other > value)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        total = 0
        for position in range(count):
            total += int(call("LargerOnLeft", position=position))
        call("Done", answer=total)
