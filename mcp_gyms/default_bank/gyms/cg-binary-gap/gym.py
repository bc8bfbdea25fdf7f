from typing import Any

from mcp_gyms import Gym, tool


class SignalGapsGym(Gym):
    answer_type = int
    answer_doc = "The answer is the largest distance between consecutive 1 bits."

    def setup(self, task: dict[str, Any]) -> None:
        self.n: int = int(task["n"])
        self.read: set[int] = set()

    def observe(self) -> str:
        return f"The signal has {self.n.bit_length()} bits; {len(self.read)} bits read so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        n, last, best, position = task["n"], None, 0, 0
        while n:
            if n & 1:
                if last is not None:
                    best = max(best, position - last)
                last = position
            n >>= 1
            position += 1
        return best

    @tool
    def BitLength(self) -> int:
        """Return how many bits the number has (up to its highest 1 bit).

        Returns:
            int: the number of bits.

        Example Output:
            17
        """
        return self.n.bit_length()

    @tool
    def Bit(self, position: int) -> int:
        """Read one bit; position 0 is the least significant bit.

        Args:
            position (int): a bit position between 0 and BitLength() - 1.

        Returns:
            int: 0 or 1.

        Example Output:
            1
        """
        if not 0 <= position < self.n.bit_length():
            raise IndexError(f"bit {position} is outside 0..{self.n.bit_length() - 1}")
        self.read.add(position)
        return (self.n >> position) & 1

    @tool
    def Distance(self, low: int, high: int) -> int:
        """Return the distance between two bit positions.

        Args:
            low (int): the lower position.
            high (int): the higher position.

        Returns:
            int: high - low.

        Example Output:
            3
        """
        return high - low

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        bits = int(call("BitLength"))
        last, best = None, 0
        for position in range(bits):
            if call("Bit", position=position) == "1":
                if last is not None:
                    best = max(best, position - last)
                last = position
        call("Done", answer=best)
