"""Ledger audit: find the best single trade in a hidden ledger of daily prices.

Original problem (CodeGym team): a ledger lists one price per day. Buying one unit on some day and
selling it on a strictly later day gains the sell price minus the buy price. Return the greatest gain
possible, or 0 if no trade gains anything. The reference solution tracks the lowest price so far.
"""

import json
from typing import Any

from mcp_gyms import Gym, tool

WINDOW = 5


class LedgerAuditGym(Gym):
    answer_type = int
    answer_doc = (
        "The answer is the greatest gain of one buy followed by a later sell, an integer (0 if none)."
    )

    def setup(self, task: dict[str, Any]) -> None:
        self.prices: list[int] = list(task["prices"])
        self.read: list[bool] = [False] * len(self.prices)

    def observe(self) -> str:
        days = [d for d, seen in enumerate(self.read) if seen]
        if not days:
            return (
                f"The ledger covers {len(self.prices)} days (0..{len(self.prices) - 1}). No prices read yet."
            )
        return (
            f"The ledger covers {len(self.prices)} days (0..{len(self.prices) - 1}). Prices read so far: "
            f"{len(days)} days; the highest day read is day {days[-1]}."
        )

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        lowest = None
        best = 0
        for price in task["prices"]:
            if lowest is None or price < lowest:
                lowest = price
            else:
                best = max(best, price - lowest)
        return best

    def _check(self, day: int) -> None:
        if not 0 <= day < len(self.prices):
            raise IndexError(f"day {day} is outside 0..{len(self.prices) - 1}")

    @tool
    def Days(self) -> int:
        """Return the number of days in the ledger (days count from 0).

        Returns:
            int: the number of days, at least 1.

        Example Output:
            60
        """
        return len(self.prices)

    @tool
    def Price(self, day: int) -> int:
        """Read the price on one day.

        Args:
            day (int): a day between 0 and Days() - 1.

        Returns:
            int: the price on that day.

        Example Output:
            1284
        """
        self._check(day)
        self.read[day] = True
        return self.prices[day]

    @tool
    def Window(self, start: int) -> list[int]:
        """Read the prices of up to 5 consecutive days starting at a day (fewer at the end of the ledger).

        Args:
            start (int): the first day to read, between 0 and Days() - 1.

        Returns:
            list[int]: the prices on days start, start + 1, ..., at most 5 of them.

        Example Output:
            [1284, 1301, 1177, 1190, 1452]
        """
        self._check(start)
        end = min(start + WINDOW, len(self.prices))
        for day in range(start, end):
            self.read[day] = True
        return self.prices[start:end]

    @tool
    def Gain(self, buy_day: int, sell_day: int) -> int:
        """Return the gain of buying on one day and selling on a later day.

        Args:
            buy_day (int): the day of the purchase, between 0 and Days() - 2.
            sell_day (int): the day of the sale, later than buy_day and at most Days() - 1.

        Returns:
            int: price on sell_day minus price on buy_day (negative for a loss).

        Example Output:
            -37
        """
        self._check(buy_day)
        self._check(sell_day)
        if sell_day <= buy_day:
            raise ValueError(f"sell_day {sell_day} must be later than buy_day {buy_day}")
        return self.prices[sell_day] - self.prices[buy_day]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        days = int(call("Days"))
        prices: list[int] = []
        for start in range(0, days, WINDOW):
            prices.extend(json.loads(call("Window", start=start)))
        best = 0
        highest_after = prices[-1]
        for price in reversed(prices):
            highest_after = max(highest_after, price)
            best = max(best, highest_after - price)
        call("Done", answer=best)
