from typing import Any

from mcp_gyms import Gym, tool


class TrainMiddleCarGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number on the middle car (the second of two middles), or -1."

    def setup(self, task: dict[str, Any]) -> None:
        self.cars: list[int] = list(task["head"])
        self.moves = 0

    def observe(self) -> str:
        start = "car 0" if self.cars else "no car"
        return f"The train starts at {start}. Moves made so far: {self.moves}."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        cars = task["head"]
        return cars[len(cars) // 2] if cars else -1

    @tool
    def Start(self) -> int:
        """Return the position of the first car, or -1 when there is no train.

        Returns:
            int: 0, or -1 for an empty train.

        Example Output:
            0
        """
        return 0 if self.cars else -1

    @tool
    def Advance(self, position: int, steps: int) -> int:
        """Move forward from a car by a number of cars.

        Args:
            position (int): the position of a car.
            steps (int): how many cars to move forward (1 or more).

        Returns:
            int: the position reached, or -1 if the train ends before it.

        Example Output:
            4
        """
        if not 0 <= position < len(self.cars):
            raise IndexError(f"there is no car at position {position}")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.moves += 1
        target = position + steps
        return target if target < len(self.cars) else -1

    @tool
    def Number(self, position: int) -> int:
        """Read the number on a car.

        Args:
            position (int): the position of a car.

        Returns:
            int: the number it carries.

        Example Output:
            17
        """
        if not 0 <= position < len(self.cars):
            raise IndexError(f"there is no car at position {position}")
        return self.cars[position]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        slow = int(call("Start"))
        if slow == -1:
            call("Done", answer=-1)
            return
        fast = slow
        while True:
            ahead = int(call("Advance", position=fast, steps=2))
            if ahead == -1:
                break
            slow = int(call("Advance", position=slow, steps=1))
            fast = ahead
        if int(call("Advance", position=fast, steps=1)) != -1:
            slow = int(call("Advance", position=slow, steps=1))
        call("Done", answer=int(call("Number", position=slow)))
