from typing import Any

from mcp_gyms import Gym, tool


class LonelyLetterGym(Gym):
    answer_type = int
    answer_doc = "The answer is the index of the first letter that occurs once, or -1."

    def setup(self, task: dict[str, Any]) -> None:
        self.text: str = task["text"]
        self.counted: list[str] = []

    def observe(self) -> str:
        counted = ", ".join(self.counted) or "none"
        return f"The string has {len(self.text)} letters; letters counted so far: {counted}."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        text = task["text"]
        for index, char in enumerate(text):
            if text.count(char) == 1:
                return index
        return -1

    @tool
    def Length(self) -> int:
        """Return the length of the hidden string.

        Returns:
            int: the number of letters.

        Example Output:
            18
        """
        return len(self.text)

    @tool
    def LetterAt(self, index: int) -> str:
        """Read the letter at one position.

        Args:
            index (int): a position between 0 and Length() - 1.

        Returns:
            str: the letter there.

        Example Output:
            g
        """
        if not 0 <= index < len(self.text):
            raise IndexError(f"position {index} is outside 0..{len(self.text) - 1}")
        return self.text[index]

    @tool
    def Occurrences(self, letter: str) -> int:
        """Count how often a letter occurs in the whole string.

        Args:
            letter (str): a single character.

        Returns:
            int: its number of occurrences.

        Example Output:
            3
        """
        if len(letter) != 1:
            raise ValueError("give exactly one character")
        if letter not in self.counted:
            self.counted.append(letter)
        return self.text.count(letter)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        length = int(call("Length"))
        letters = [call("LetterAt", index=index) for index in range(length)]
        counts = {}
        for letter in letters:
            if letter not in counts:
                counts[letter] = int(call("Occurrences", letter=letter))
        answer = next((index for index, letter in enumerate(letters) if counts[letter] == 1), -1)
        call("Done", answer=answer)
