from typing import Any

from mcp_gyms import Gym, tool


class TapeSqueezerGym(Gym):
    answer_type = int
    answer_doc = "The answer is the length of the run-length encoding."

    def setup(self, task: dict[str, Any]) -> None:
        self.text: str = task["text"]
        self.compared = 0

    def observe(self) -> str:
        return f"The tape holds {len(self.text)} letters; {self.compared} neighbour comparisons made."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        text, total, i = task["text"], 0, 0
        while i < len(text):
            j = i
            while j < len(text) and text[j] == text[i]:
                j += 1
            total += 1 + len(str(j - i))
            i = j
        return total

    @tool
    def Length(self) -> int:
        """Return how many letters the tape holds.

        Returns:
            int: the length of the hidden string.

        Example Output:
            23
        """
        return len(self.text)

    @tool
    def Letter(self, index: int) -> str:
        """Read one letter of the tape.

        Args:
            index (int): a position between 0 and Length() - 1.

        Returns:
            str: the letter there.

        Example Output:
            c
        """
        if not 0 <= index < len(self.text):
            raise IndexError(f"position {index} is outside 0..{len(self.text) - 1}")
        return self.text[index]

    @tool
    def SameAsPrevious(self, index: int) -> bool:
        """Check whether the letter at a position repeats the letter just before it.

        Args:
            index (int): a position between 1 and Length() - 1.

        Returns:
            bool: true when text[index] == text[index - 1].

        Example Output:
            false
        """
        if not 1 <= index < len(self.text):
            raise IndexError(f"position {index} has no letter before it")
        self.compared += 1
        return self.text[index] == self.text[index - 1]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        length = int(call("Length"))
        total, run = 0, 1
        for index in range(1, length):
            if call("SameAsPrevious", index=index) == "true":
                run += 1
            else:
                total += 1 + len(str(run))
                run = 1
        if length:
            total += 1 + len(str(run))
        call("Done", answer=total)
