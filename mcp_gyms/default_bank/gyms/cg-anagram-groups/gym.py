from typing import Any

from mcp_gyms import Gym, tool


class LetterTilesGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of anagram groups."

    def setup(self, task: dict[str, Any]) -> None:
        self.words: list[str] = list(task["words"])
        self.sorted_words = 0

    def observe(self) -> str:
        return f"{len(self.words)} words are on the table; {self.sorted_words} of them sorted so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        return len({"".join(sorted(word)) for word in task["words"]})

    @tool
    def Count(self) -> int:
        """Return how many words are on the table.

        Returns:
            int: the number of words.

        Example Output:
            13
        """
        return len(self.words)

    @tool
    def Word(self, index: int) -> str:
        """Read one word.

        Args:
            index (int): a word between 0 and Count() - 1.

        Returns:
            str: the word.

        Example Output:
            silent
        """
        if not 0 <= index < len(self.words):
            raise IndexError(f"word {index} is outside 0..{len(self.words) - 1}")
        return self.words[index]

    @tool
    def SortedLetters(self, index: int) -> str:
        """Return a word's letters in alphabetical order (its anagram signature).

        Args:
            index (int): a word between 0 and Count() - 1.

        Returns:
            str: the sorted letters.

        Example Output:
            eilnst
        """
        if not 0 <= index < len(self.words):
            raise IndexError(f"word {index} is outside 0..{len(self.words) - 1}")
        self.sorted_words += 1
        return "".join(sorted(self.words[index]))

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        signatures = {call("SortedLetters", index=index) for index in range(count)}
        call("Done", answer=len(signatures))
