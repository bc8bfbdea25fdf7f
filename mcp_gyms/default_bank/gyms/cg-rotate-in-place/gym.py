from typing import Any

from mcp_gyms import Gym, tool


class CarouselShiftGym(Gym):
    answer_type = list[int]
    answer_doc = "The answer is the seat numbers after the turn, front to back."

    def setup(self, task: dict[str, Any]) -> None:
        self.seats: list[int] = list(task["nums"])
        self.turn: int = int(task["k"])
        self.asked = 0

    def observe(self) -> str:
        return f"The carousel has {len(self.seats)} seats; {self.asked} destinations asked so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> list[int]:
        nums, k = list(task["nums"]), task["k"]
        if not nums:
            return []
        k %= len(nums)
        return nums[len(nums) - k:] + nums[:len(nums) - k]

    def _check(self, place: int) -> None:
        if not 0 <= place < len(self.seats):
            raise IndexError(f"there is no place {place}")

    @tool
    def Count(self) -> int:
        """Return how many seats the carousel has.

        Returns:
            int: the number of seats.

        Example Output:
            7
        """
        return len(self.seats)

    @tool
    def Seat(self, place: int) -> int:
        """Read the number of the seat at a place, before the turn.

        Args:
            place (int): a place between 0 and Count() - 1.

        Returns:
            int: the seat number.

        Example Output:
            4
        """
        self._check(place)
        return self.seats[place]

    @tool
    def Destination(self, place: int) -> int:
        """Where the seat now at a place ends up after the turn.

        Args:
            place (int): a place between 0 and Count() - 1.

        Returns:
            int: its place after the turn.

        Example Output:
            2
        """
        self._check(place)
        self.asked += 1
        return (place + self.turn) % len(self.seats)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        after = [0] * count
        for place in range(count):
            after[int(call("Destination", place=place))] = int(call("Seat", place=place))
        call("Done", answer=after)
