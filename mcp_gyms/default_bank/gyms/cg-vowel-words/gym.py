from typing import Any

from mcp_gyms import Gym, tool


class VowelScoutGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of words that begin with a vowel."

    def setup(self, task: dict[str, Any]) -> None:
        self.words: list[str] = task["sentence"].split()
        self.checked = 0

    def observe(self) -> str:
        return f"The sentence has {len(self.words)} words; {self.checked} checked so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        return sum(1 for word in task["sentence"].split() if word[0].lower() in "aeiou")

    @tool
    def WordCount(self) -> int:
        """Return how many words the sentence has.

        Returns:
            int: the number of whitespace-separated words.

        Example Output:
            17
        """
        return len(self.words)

    @tool
    def Word(self, index: int) -> str:
        """Read one word of the sentence.

        Args:
            index (int): a word between 0 and WordCount() - 1.

        Returns:
            str: the word.

        Example Output:
            Ember
        """
        if not 0 <= index < len(self.words):
            raise IndexError(f"word {index} is outside 0..{len(self.words) - 1}")
        return self.words[index]

    @tool
    def StartsWithVowel(self, index: int) -> bool:
        """Check whether one word of the sentence begins with a vowel (a, e, i, o, u; any case).

        Args:
            index (int): a word between 0 and WordCount() - 1.

        Returns:
            bool: true when the word begins with a vowel.

        Example Output:
            true
        """
        if not 0 <= index < len(self.words):
            raise IndexError(f"word {index} is outside 0..{len(self.words) - 1}")
        self.checked += 1
        return self.words[index][0].lower() in "aeiou"

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("WordCount"))
        total = sum(1 for index in range(count) if call("StartsWithVowel", index=index) == "true")
        call("Done", answer=total)
