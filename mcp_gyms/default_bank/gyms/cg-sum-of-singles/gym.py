from typing import Any

from mcp_gyms import Gym, tool


class OddSocksGym(Gym):
    answer_type = int
    answer_doc = "The answer is the sum of the sizes that occur exactly once."

    def setup(self, task: dict[str, Any]) -> None:
        self.nums: list[int] = list(task["nums"])
        self.counted: set[int] = set()

    def observe(self) -> str:
        return f"The drawer holds {len(self.nums)} socks; {len(self.counted)} sizes counted so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        nums = task["nums"]
        return sum(value for value in set(nums) if nums.count(value) == 1)

    @tool
    def Count(self) -> int:
        """Return how many socks are in the drawer.

        Returns:
            int: the number of socks.

        Example Output:
            15
        """
        return len(self.nums)

    @tool
    def Sock(self, index: int) -> int:
        """Read one sock's size.

        Args:
            index (int): a sock between 0 and Count() - 1.

        Returns:
            int: its size.

        Example Output:
            38
        """
        if not 0 <= index < len(self.nums):
            raise IndexError(f"sock {index} is outside 0..{len(self.nums) - 1}")
        return self.nums[index]

    @tool
    def SocksOfSize(self, size: int) -> int:
        """Count the socks of one size.

        Args:
            size (int): a sock size.

        Returns:
            int: how many socks have that size.

        Example Output:
            2
        """
        self.counted.add(size)
        return self.nums.count(size)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        sizes = {int(call("Sock", index=index)) for index in range(count)}
        total = sum(size for size in sorted(sizes) if int(call("SocksOfSize", size=size)) == 1)
        call("Done", answer=total)
