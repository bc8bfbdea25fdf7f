from typing import Any

from mcp_gyms import Gym, tool


class CampfireCircleGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of the last person remaining."

    def setup(self, task: dict[str, Any]) -> None:
        self.people: list[int] = list(range(1, int(task["n"]) + 1))
        self.k: int = int(task["k"])
        self.index = 0

    def observe(self) -> str:
        return f"{len(self.people)} people are still around the fire."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        people, index = list(range(1, task["n"] + 1)), 0
        while len(people) > 1:
            index = (index + task["k"] - 1) % len(people)
            people.pop(index)
        return people[0]

    @tool
    def Remaining(self) -> int:
        """Return how many people are still in the circle.

        Returns:
            int: the number of people left.

        Example Output:
            9
        """
        return len(self.people)

    @tool
    def Step(self) -> int:
        """Return the counting step k.

        Returns:
            int: every k-th person counted leaves.

        Example Output:
            3
        """
        return self.k

    @tool
    def Eliminate(self) -> int:
        """Count k people onward from the current position; that person leaves the circle.

        Returns:
            int: the number of the person who left.

        Example Output:
            6
        """
        if len(self.people) <= 1:
            raise ValueError("only one person is left")
        self.index = (self.index + self.k - 1) % len(self.people)
        return self.people.pop(self.index)

    @tool
    def Circle(self) -> list[int]:
        """List the people still in the circle, in seating order.

        Returns:
            list[int]: their numbers.

        Example Output:
            [2, 5, 9]
        """
        return list(self.people)

    @staticmethod
    def solve(call) -> None:
        import json

        call("Observe")
        remaining = int(call("Remaining"))
        call("Step")
        for _ in range(remaining - 1):
            call("Eliminate")
        call("Done", answer=json.loads(call("Circle"))[0])
