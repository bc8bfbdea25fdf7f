from typing import Any

from mcp_gyms import Gym, tool


class WeatherWatchGym(Gym):
    answer_type = int
    answer_doc = "The answer is the total number of days waited for a warmer day."

    def setup(self, task: dict[str, Any]) -> None:
        self.temps: list[int] = list(task["temps"])
        self.lookups = 0

    def observe(self) -> str:
        return f"The log covers {len(self.temps)} days; {self.lookups} forecasts looked up."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        temps, total = task["temps"], 0
        for day, temp in enumerate(temps):
            later = next((d for d in range(day + 1, len(temps)) if temps[d] > temp), None)
            if later is not None:
                total += later - day
        return total

    @tool
    def Days(self) -> int:
        """Return how many days the log covers.

        Returns:
            int: the number of days.

        Example Output:
            21
        """
        return len(self.temps)

    @tool
    def Temperature(self, day: int) -> int:
        """Read one day's temperature.

        Args:
            day (int): a day between 0 and Days() - 1.

        Returns:
            int: the temperature that day.

        Example Output:
            18
        """
        if not 0 <= day < len(self.temps):
            raise IndexError(f"day {day} is outside 0..{len(self.temps) - 1}")
        return self.temps[day]

    @tool
    def NextWarmer(self, day: int) -> int:
        """Find the first later day that is strictly warmer than a given day.

        Args:
            day (int): a day between 0 and Days() - 1.

        Returns:
            int: that later day's index, or -1 if no warmer day follows.

        Example Output:
            7
        """
        if not 0 <= day < len(self.temps):
            raise IndexError(f"day {day} is outside 0..{len(self.temps) - 1}")
        self.lookups += 1
        return next((d for d in range(day + 1, len(self.temps)) if self.temps[d] > self.temps[day]), -1)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        days = int(call("Days"))
        total = 0
        for day in range(days):
            later = int(call("NextWarmer", day=day))
            if later >= 0:
                total += later - day
        call("Done", answer=total)
