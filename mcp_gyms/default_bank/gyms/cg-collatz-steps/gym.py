from typing import Any

from mcp_gyms import Gym, tool


class HailstoneGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of steps needed to reach 1."

    def setup(self, task: dict[str, Any]) -> None:
        self.start: int = int(task["n"])
        self.moves = 0

    def observe(self) -> str:
        return f"The hailstone has not been measured; you have applied {self.moves} steps so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        n, steps = task["n"], 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        return steps

    @tool
    def Start(self) -> int:
        """Return the starting number.

        Returns:
            int: the hidden positive starting number.

        Example Output:
            27
        """
        return self.start

    @tool
    def IsEven(self, number: int) -> bool:
        """Tell whether a number is even.

        Args:
            number (int): a positive integer.

        Returns:
            bool: true for an even number.

        Example Output:
            false
        """
        return number % 2 == 0

    @tool
    def Halve(self, number: int) -> int:
        """Apply the step for an even number: halve it.

        Args:
            number (int): a positive even integer.

        Returns:
            int: number / 2.

        Example Output:
            41
        """
        if number <= 0 or number % 2:
            raise ValueError(f"{number} is not a positive even number")
        self.moves += 1
        return number // 2

    @tool
    def Triple(self, number: int) -> int:
        """Apply the step for an odd number: 3 * number + 1.

        Args:
            number (int): a positive odd integer.

        Returns:
            int: 3 * number + 1.

        Example Output:
            82
        """
        if number <= 0 or number % 2 == 0:
            raise ValueError(f"{number} is not a positive odd number")
        self.moves += 1
        return 3 * number + 1

    @staticmethod
    def solve(call) -> None:
        number = int(call("Start"))
        steps = 0
        while number != 1:
            if call("IsEven", number=number) == "true":
                number = int(call("Halve", number=number))
            else:
                number = int(call("Triple", number=number))
            steps += 1
        call("Done", answer=steps)
