"""Bracket inspector: find the longest balanced stretch of a hidden string of brackets.

Original problem (CodeGym team): a string is made only of '(' and ')'. Return the length of its
longest contiguous substring that is a well-formed bracket sequence (every '(' closed by a later ')',
never closing more than was opened), or 0 if there is none. The reference solution keeps a stack of
the positions of unmatched brackets.
"""

from typing import Any

from mcp_gyms import Gym, tool

CHUNK = 8


class BracketInspectorGym(Gym):
    answer_type = int
    answer_doc = "The answer is the length of the longest well-formed substring, an integer (0 if none)."

    def setup(self, task: dict[str, Any]) -> None:
        self.text: str = task["brackets"]
        self.known: list[str] = ["?"] * len(self.text)

    def observe(self) -> str:
        read = len(self.text) - self.known.count("?")
        prefix = 0
        while prefix < len(self.known) and self.known[prefix] != "?":
            prefix += 1
        return (
            f"The string has {len(self.text)} brackets. Positions read so far: {read}. "
            f"The first {prefix} brackets are all read."
        )

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        text = task["brackets"]
        stack = [-1]
        best = 0
        for i, ch in enumerate(text):
            if ch == "(":
                stack.append(i)
            else:
                stack.pop()
                if stack:
                    best = max(best, i - stack[-1])
                else:
                    stack.append(i)
        return best

    def _check(self, value: int, last: int, name: str = "position") -> None:
        if not 0 <= value <= last:
            raise IndexError(f"{name} {value} is outside 0..{last}")

    @tool
    def Length(self) -> int:
        """Return the number of brackets in the string.

        Returns:
            int: the length of the string, at least 1.

        Example Output:
            96
        """
        return len(self.text)

    @tool
    def CharAt(self, position: int) -> str:
        """Read the bracket at one position (positions count from 0).

        Args:
            position (int): a position between 0 and Length() - 1.

        Returns:
            str: "(" or ")".

        Example Output:
            (
        """
        self._check(position, len(self.text) - 1)
        self.known[position] = self.text[position]
        return self.text[position]

    @tool
    def Chunk(self, start: int) -> str:
        """Read up to 8 consecutive brackets starting at a position (fewer at the end of the string).

        Args:
            start (int): the first position to read, between 0 and Length() - 1.

        Returns:
            str: the brackets at positions start, start + 1, ..., at most 8 of them.

        Example Output:
            (()))(()
        """
        self._check(start, len(self.text) - 1)
        end = min(start + CHUNK, len(self.text))
        self.known[start:end] = list(self.text[start:end])
        return self.text[start:end]

    @tool
    def Balance(self, end: int) -> int:
        """Count opening minus closing brackets among the first `end` brackets.

        Args:
            end (int): how many brackets from the start to count, between 0 and Length().

        Returns:
            int: the number of '(' minus the number of ')' in positions 0 .. end - 1 (may be negative).

        Example Output:
            -2
        """
        self._check(end, len(self.text), "end")
        head = self.text[:end]
        return head.count("(") - head.count(")")

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        length = int(call("Length"))
        text = "".join(call("Chunk", start=s) for s in range(0, length, CHUNK))
        best = 0
        # two passes: left to right catches surplus ')', right to left catches surplus '('
        for seq, opener in ((text, "("), (text[::-1], ")")):
            opened = closed = 0
            for ch in seq:
                if ch == opener:
                    opened += 1
                else:
                    closed += 1
                if opened == closed:
                    best = max(best, 2 * closed)
                elif closed > opened:
                    opened = closed = 0
        call("Done", answer=best)
