from typing import Any

from mcp_gyms import Gym, tool


class NextPrimeLockerGym(Gym):
    answer_type = int
    answer_doc = "The answer is the smallest prime strictly greater than the locker number."

    def setup(self, task: dict[str, Any]) -> None:
        self.number: int = int(task["n"])
        self.tests = 0

    def observe(self) -> str:
        return f"A locker number is hidden; {self.tests} divisibility tests made so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        candidate = task["n"] + 1
        while candidate < 2 or any(candidate % d == 0 for d in range(2, int(candidate ** 0.5) + 1)):
            candidate += 1
        return candidate

    @tool
    def LockerNumber(self) -> int:
        """Read the locker number.

        Returns:
            int: the hidden number.

        Example Output:
            24
        """
        return self.number

    @tool
    def AddOne(self, value: int) -> int:
        """Add one to a number.

        Args:
            value (int): a number.

        Returns:
            int: value + 1.

        Example Output:
            25
        """
        return value + 1

    @tool
    def Divides(self, divisor: int, value: int) -> bool:
        """Tell whether a divisor divides a number exactly.

        Args:
            divisor (int): a number of at least 2.
            value (int): the number to test.

        Returns:
            bool: true when value % divisor == 0.

        Example Output:
            false
        """
        if divisor < 2:
            raise ValueError(f"divisor must be at least 2, got {divisor}")
        self.tests += 1
        return value % divisor == 0

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        candidate = int(call("AddOne", value=int(call("LockerNumber"))))
        while True:
            prime = candidate >= 2
            divisor = 2
            while prime and divisor * divisor <= candidate:
                if call("Divides", divisor=divisor, value=candidate) == "true":
                    prime = False
                divisor += 1
            if prime:
                break
            candidate = int(call("AddOne", value=candidate))
        call("Done", answer=candidate)
