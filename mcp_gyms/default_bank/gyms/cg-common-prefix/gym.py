from typing import Any

from mcp_gyms import Gym, tool


class SharedStemGym(Gym):
    answer_type = int
    answer_doc = "The answer is the length of the longest common prefix."

    def setup(self, task: dict[str, Any]) -> None:
        self.words: list[str] = list(task["words"])
        self.read: set[int] = set()

    def observe(self) -> str:
        return f"{len(self.words)} words are hidden; {len(self.read)} read so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        words = task["words"]
        prefix = words[0]
        for word in words[1:]:
            i = 0
            while i < min(len(prefix), len(word)) and prefix[i] == word[i]:
                i += 1
            prefix = prefix[:i]
        return len(prefix)

    @tool
    def Count(self) -> int:
        """Return how many words there are.

        Returns:
            int: the number of words.

        Example Output:
            12
        """
        return len(self.words)

    @tool
    def Word(self, index: int) -> list[str]:
        """Read one word. It comes wrapped in a one-element list, so that an empty word is visible.

        Args:
            index (int): a word between 0 and Count() - 1.

        Returns:
            list[str]: [the word].

        Example Output:
            ["cabbage"]
        """
        if not 0 <= index < len(self.words):
            raise IndexError(f"word {index} is outside 0..{len(self.words) - 1}")
        self.read.add(index)
        return [self.words[index]]

    @tool
    def CommonStart(self, first: str, second: str) -> list[str]:
        """Compute the longest common beginning of two strings.

        Args:
            first (str): a string.
            second (str): another string.

        Returns:
            list[str]: [their longest common prefix] (possibly [""]).

        Example Output:
            ["cab"]
        """
        i = 0
        while i < min(len(first), len(second)) and first[i] == second[i]:
            i += 1
        return [first[:i]]

    @staticmethod
    def solve(call) -> None:
        import json

        call("Observe")
        count = int(call("Count"))
        prefix = json.loads(call("Word", index=0))[0]
        for index in range(1, count):
            word = json.loads(call("Word", index=index))[0]
            prefix = json.loads(call("CommonStart", first=prefix, second=word))[0]
        call("Done", answer=len(prefix))
