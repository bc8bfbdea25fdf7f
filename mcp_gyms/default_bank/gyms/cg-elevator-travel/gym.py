from typing import Any

from mcp_gyms import Gym, tool


class ElevatorLogGym(Gym):
    answer_type = int
    answer_doc = "The answer is the total number of floors travelled."

    def setup(self, task: dict[str, Any]) -> None:
        self.start: int = int(task["start"])
        self.requests: list[int] = list(task["requests"])
        self.read: set[int] = set()

    def observe(self) -> str:
        return f"The log lists {len(self.requests)} requests; {len(self.read)} read so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        total, floor = 0, task["start"]
        for target in task["requests"]:
            total += abs(target - floor)
            floor = target
        return total

    @tool
    def StartFloor(self) -> int:
        """Return the floor the elevator starts at.

        Returns:
            int: the starting floor.

        Example Output:
            3
        """
        return self.start

    @tool
    def RequestCount(self) -> int:
        """Return how many requests the elevator serves.

        Returns:
            int: the number of requests.

        Example Output:
            9
        """
        return len(self.requests)

    @tool
    def Request(self, index: int) -> int:
        """Read one requested floor.

        Args:
            index (int): a request between 0 and RequestCount() - 1, in the order served.

        Returns:
            int: the requested floor.

        Example Output:
            12
        """
        if not 0 <= index < len(self.requests):
            raise IndexError(f"request {index} is outside 0..{len(self.requests) - 1}")
        self.read.add(index)
        return self.requests[index]

    @tool
    def Distance(self, origin: int, target: int) -> int:
        """Return how many floors lie between two floors.

        Args:
            origin (int): a floor.
            target (int): another floor.

        Returns:
            int: |target - origin|.

        Example Output:
            7
        """
        return abs(target - origin)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        floor = int(call("StartFloor"))
        count = int(call("RequestCount"))
        total = 0
        for index in range(count):
            target = int(call("Request", index=index))
            total += int(call("Distance", origin=floor, target=target))
            floor = target
        call("Done", answer=total)
