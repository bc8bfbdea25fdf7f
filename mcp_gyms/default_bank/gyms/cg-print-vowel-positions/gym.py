from typing import Any

from mcp_gyms import Gym, tool


class VowelScannerGym(Gym):
    answer_type = str
    answer_doc = "The answer is the vowel positions separated by spaces, or none."

    def setup(self, task: dict[str, Any]) -> None:
        self.text: str = str(task["text"])
        self.read = 0

    def observe(self) -> str:
        return f"A line of text is hidden; {self.read} characters read so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> str:
        positions = [str(i) for i, ch in enumerate(task["text"]) if ch.lower() in "aeiou"]
        return " ".join(positions) if positions else "none"

    @tool
    def Length(self) -> int:
        """Return the number of characters of the text.

        Returns:
            int: the length.

        Example Output:
            11
        """
        return len(self.text)

    @tool
    def CharAt(self, index: int) -> str:
        """Read the character at a position.

        Args:
            index (int): a position between 0 and Length() - 1.

        Returns:
            str: one character.

        Example Output:
            e
        """
        if not 0 <= index < len(self.text):
            raise IndexError(f"there is no character at position {index}")
        self.read += 1
        return self.text[index]

    @tool
    def IsVowel(self, char: str) -> bool:
        """Tell whether a single character is a vowel (a, e, i, o, u, either case).

        Args:
            char (str): one character.

        Returns:
            bool: true for a vowel.

        Example Output:
            true
        """
        if len(char) != 1:
            raise ValueError(f"expected one character, got {char!r}")
        return char.lower() in "aeiou"

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        positions = []
        for index in range(int(call("Length"))):
            if call("IsVowel", char=call("CharAt", index=index)) == "true":
                positions.append(str(index))
        call("Done", answer=" ".join(positions) if positions else "none")
