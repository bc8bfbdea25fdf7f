"""Tape decoder: read chosen letters of a long message that is stored run-length encoded.

Original problem (CodeGym team): a message is stored as runs (a letter and how many times it repeats;
neighbouring runs have different letters). Given a list of positions in the decoded message, return the
letters at those positions, joined into one string. The reference solution builds the running totals of
the run lengths and finds the run holding each position by binary search.
"""

import bisect
import json
from itertools import accumulate
from typing import Any

from mcp_gyms import Gym, tool


class TapeDecoderGym(Gym):
    answer_type = str
    answer_doc = "The answer is the letters at the asked positions, in the order asked, joined as one string."

    def setup(self, task: dict[str, Any]) -> None:
        self.letters: str = str(task["letters"])
        self.lengths: list[int] = list(task["lengths"])
        self.ends: list[int] = list(accumulate(self.lengths))
        self.queries: list[int] = list(task["queries"])
        self.runs_read: list[int] = []
        self.ends_read: list[int] = []

    def observe(self) -> str:
        runs = ", ".join(f"#{i}={self.letters[i]}x{self.lengths[i]}" for i in self.runs_read[-8:])
        ends = ", ".join(f"#{i}->{self.ends[i]}" for i in self.ends_read[-8:])
        return (
            f"The tape stores the message as {len(self.letters)} runs; {len(self.queries)} positions are asked. "
            f"Runs read: {len(self.runs_read)} (most recent: {runs or 'none'}). "
            f"Run ends read: {len(self.ends_read)} (most recent: {ends or 'none'})."
        )

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> str:
        ends = list(accumulate(task["lengths"]))
        return "".join(task["letters"][bisect.bisect_right(ends, p)] for p in task["queries"])

    @tool
    def RunCount(self) -> int:
        """Return the number of runs stored on the tape.

        Returns:
            int: the number of runs, at least 1.

        Example Output:
            37
        """
        return len(self.letters)

    @tool
    def Queries(self) -> list[int]:
        """Return the positions of the decoded message whose letters you must report, in order.

        Returns:
            list[int]: positions in the decoded message (counting from 0); a position may repeat.

        Example Output:
            [0, 415, 88, 1203]
        """
        return list(self.queries)

    @tool
    def Run(self, index: int) -> list:
        """Read one run of the tape: its letter and how many times the letter repeats.

        Args:
            index (int): a run between 0 and RunCount() - 1.

        Returns:
            list: [letter, length], e.g. a run "ccccc" is ["c", 5].

        Example Output:
            ["k", 6]
        """
        if not 0 <= index < len(self.letters):
            raise IndexError(f"run {index} is outside 0..{len(self.letters) - 1}")
        if index not in self.runs_read:
            self.runs_read.append(index)
        return [self.letters[index], self.lengths[index]]

    @tool
    def EndOf(self, index: int) -> int:
        """Return where a run ends in the decoded message: the total length of runs 0..index together.
        Run `index` covers decoded positions EndOf(index - 1) .. EndOf(index) - 1 (run 0 starts at 0).

        Args:
            index (int): a run between 0 and RunCount() - 1.

        Returns:
            int: the number of decoded letters up to and including that run.

        Example Output:
            1290
        """
        if not 0 <= index < len(self.letters):
            raise IndexError(f"run {index} is outside 0..{len(self.letters) - 1}")
        if index not in self.ends_read:
            self.ends_read.append(index)
        return self.ends[index]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        runs = int(call("RunCount"))
        queries = json.loads(call("Queries"))
        ends: dict[int, int] = {}
        letters: dict[int, str] = {}

        def end(index: int) -> int:
            if index not in ends:
                ends[index] = int(call("EndOf", index=index))
            return ends[index]

        word = []
        for position in queries:
            lo, hi = 0, runs - 1  # first run whose end lies beyond the position
            while lo < hi:
                mid = (lo + hi) // 2
                if end(mid) > position:
                    hi = mid
                else:
                    lo = mid + 1
            if lo not in letters:
                letters[lo] = json.loads(call("Run", index=lo))[0]
            word.append(letters[lo])
        call("Done", answer="".join(word))
