from collections import Counter
from typing import Any

from mcp_gyms import Gym, tool


class WordCensusGym(Gym):
    answer_type = str
    answer_doc = "The answer is the most frequent word (alphabetically smallest on ties)."

    def setup(self, task: dict[str, Any]) -> None:
        self.words: list[str] = list(task["words"])
        self.tallies = 0

    def observe(self) -> str:
        return f"The census lists {len(self.words)} words; {self.tallies} tallies made so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> str:
        words = task["words"]
        if not words:
            return ""
        counts = Counter(words)
        best = max(counts.values())
        return min(word for word, count in counts.items() if count == best)

    @tool
    def Count(self) -> int:
        """Return how many words the list holds.

        Returns:
            int: the number of words.

        Example Output:
            20
        """
        return len(self.words)

    @tool
    def Word(self, index: int) -> str:
        """Read one word of the list.

        Args:
            index (int): a position between 0 and Count() - 1.

        Returns:
            str: the word at that position.

        Example Output:
            maple
        """
        if not 0 <= index < len(self.words):
            raise IndexError(f"position {index} is outside 0..{len(self.words) - 1}")
        return self.words[index]

    @tool
    def Tally(self, word: str) -> int:
        """Count how often a word occurs in the list.

        Args:
            word (str): the word to count.

        Returns:
            int: its number of occurrences (0 if absent).

        Example Output:
            6
        """
        self.tallies += 1
        return self.words.count(word)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        distinct = sorted({call("Word", index=index) for index in range(count)})
        best_word, best_count = "", 0
        for word in distinct:
            occurrences = int(call("Tally", word=word))
            if occurrences > best_count:
                best_word, best_count = word, occurrences
        call("Done", answer=best_word)
