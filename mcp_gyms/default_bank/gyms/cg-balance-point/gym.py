from typing import Any

from mcp_gyms import Gym, tool


class SeesawGym(Gym):
    answer_type = int
    answer_doc = "The answer is the leftmost balancing position, or -1."

    def setup(self, task: dict[str, Any]) -> None:
        self.weights: list[int] = list(task["weights"])
        self.sums_taken = 0

    def observe(self) -> str:
        return f"{len(self.weights)} weights sit on the seesaw; {self.sums_taken} prefix sums taken so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        weights = task["weights"]
        total = sum(weights)
        left = 0
        for i, weight in enumerate(weights):
            if left == total - left - weight:
                return i
            left += weight
        return -1

    @tool
    def Count(self) -> int:
        """Return how many weights sit on the seesaw.

        Returns:
            int: the number of weights.

        Example Output:
            9
        """
        return len(self.weights)

    @tool
    def Total(self) -> int:
        """Return the sum of all weights.

        Returns:
            int: the total weight.

        Example Output:
            41
        """
        return sum(self.weights)

    @tool
    def Weight(self, position: int) -> int:
        """Read the weight at one position.

        Args:
            position (int): a position between 0 and Count() - 1.

        Returns:
            int: the weight there.

        Example Output:
            7
        """
        if not 0 <= position < len(self.weights):
            raise IndexError(f"position {position} is outside 0..{len(self.weights) - 1}")
        return self.weights[position]

    @tool
    def SumBefore(self, position: int) -> int:
        """Sum the weights strictly left of a position.

        Args:
            position (int): a position between 0 and Count().

        Returns:
            int: the sum of weights[0:position].

        Example Output:
            18
        """
        if not 0 <= position <= len(self.weights):
            raise IndexError(f"position {position} is outside 0..{len(self.weights)}")
        self.sums_taken += 1
        return sum(self.weights[:position])

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        total = int(call("Total"))
        answer = -1
        for position in range(count):
            left = int(call("SumBefore", position=position))
            weight = int(call("Weight", position=position))
            if answer == -1 and left == total - left - weight:
                answer = position
        call("Done", answer=answer)
