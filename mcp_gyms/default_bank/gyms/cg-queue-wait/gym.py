from typing import Any

from mcp_gyms import Gym, tool


class TicketCounterGym(Gym):
    answer_type = int
    answer_doc = "The answer is the total waiting time of all customers."

    def setup(self, task: dict[str, Any]) -> None:
        self.arrivals: list[int] = list(task["arrivals"])
        self.durations: list[int] = list(task["durations"])
        self.served = 0

    def observe(self) -> str:
        return f"{len(self.arrivals)} customers came to the counter; {self.served} service starts planned."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        free_at = waited = 0
        for arrival, duration in zip(task["arrivals"], task["durations"]):
            start = max(arrival, free_at)
            waited += start - arrival
            free_at = start + duration
        return waited

    @tool
    def Customers(self) -> int:
        """Return how many customers came.

        Returns:
            int: the number of customers.

        Example Output:
            12
        """
        return len(self.arrivals)

    @tool
    def Customer(self, index: int) -> list[int]:
        """Read one customer's arrival time and service duration.

        Args:
            index (int): a customer between 0 and Customers() - 1, in order of arrival.

        Returns:
            list[int]: [arrival time, service duration].

        Example Output:
            [14, 3]
        """
        if not 0 <= index < len(self.arrivals):
            raise IndexError(f"customer {index} is outside 0..{len(self.arrivals) - 1}")
        return [self.arrivals[index], self.durations[index]]

    @tool
    def ServiceStart(self, index: int, free_at: int) -> int:
        """When does a customer's service start if the counter becomes free at a given time?

        Args:
            index (int): a customer between 0 and Customers() - 1.
            free_at (int): the time the counter becomes free.

        Returns:
            int: max(arrival time, free_at).

        Example Output:
            17
        """
        if not 0 <= index < len(self.arrivals):
            raise IndexError(f"customer {index} is outside 0..{len(self.arrivals) - 1}")
        self.served += 1
        return max(self.arrivals[index], free_at)

    @staticmethod
    def solve(call) -> None:
        import json

        call("Observe")
        customers = int(call("Customers"))
        free_at = waited = 0
        for index in range(customers):
            arrival, duration = json.loads(call("Customer", index=index))
            start = int(call("ServiceStart", index=index, free_at=free_at))
            waited += start - arrival
            free_at = start + duration
        call("Done", answer=waited)
