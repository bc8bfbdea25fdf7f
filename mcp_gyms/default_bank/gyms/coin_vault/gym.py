"""Coin vault: find the fewest coins that pay an amount exactly, filling a shared ledger coin by coin.

Original problem (CodeGym team): given distinct coin values (an unlimited supply of each) and a target
amount, return the least number of coins whose values add up to the target, or -1 if no combination
does. The reference solution is the classic dynamic programme over amounts 0..target, relaxed once per
coin value in increasing order of amount.
"""

from typing import Any

from mcp_gyms import Gym, tool


class CoinVaultGym(Gym):
    answer_type = int
    answer_doc = "The answer is the fewest coins that pay the target amount exactly, or -1 if impossible."

    def setup(self, task: dict[str, Any]) -> None:
        self.coins: list[int] = list(task["coins"])
        self.target: int = int(task["target"])
        self.ledger: list[int] = [0] + [-1] * self.target  # fewest coins known per amount, -1 = unknown
        self.revealed: list[int] = []  # coin indexes read
        self.applied: list[int] = []  # coin values relaxed into the ledger

    def observe(self) -> str:
        known = ", ".join(f"#{i}={self.coins[i]}" for i in self.revealed)
        applied = ", ".join(str(c) for c in self.applied)
        reachable = sum(1 for v in self.ledger if v >= 0)
        return (
            f"The vault holds {len(self.coins)} coin types (unlimited coins of each). "
            f"Coin values read: {known or 'none'}. Coins applied to the ledger: {applied or 'none'}. "
            f"The ledger currently knows a way to pay {reachable} amounts (amount 0 included)."
        )

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        target = task["target"]
        best = [0] + [-1] * target
        for coin in sorted(task["coins"]):
            for amount in range(coin, target + 1):
                prev = best[amount - coin]
                if prev >= 0 and (best[amount] < 0 or prev + 1 < best[amount]):
                    best[amount] = prev + 1
        return best[target]

    @tool
    def CoinCount(self) -> int:
        """Return how many coin types the vault holds.

        Returns:
            int: the number of distinct coin values, at least 1.

        Example Output:
            5
        """
        return len(self.coins)

    @tool
    def Coin(self, index: int) -> int:
        """Read the value of one coin type (types are numbered from 0).

        Args:
            index (int): a coin type between 0 and CoinCount() - 1.

        Returns:
            int: the value of that coin type, a positive integer.

        Example Output:
            12
        """
        if not 0 <= index < len(self.coins):
            raise IndexError(f"coin index {index} is outside 0..{len(self.coins) - 1}")
        if index not in self.revealed:
            self.revealed.append(index)
        return self.coins[index]

    @tool
    def Target(self) -> int:
        """Return the amount that must be paid exactly.

        Returns:
            int: the target amount, a non-negative integer.

        Example Output:
            347
        """
        return self.target

    @tool
    def Relax(self, coin: int) -> int:
        """Improve the ledger with one coin value. The ledger records, for every amount from 0 to the
        target, the fewest coins known to pay it (at first only amount 0, with 0 coins). Going through
        the amounts in increasing order, each amount a >= coin becomes payable with ledger[a - coin] + 1
        coins when that is fewer than what the ledger held.

        Args:
            coin (int): the value of one of the vault's coin types.

        Returns:
            int: how many ledger amounts got a better (or first) way to be paid.

        Example Output:
            58
        """
        if coin not in self.coins:
            raise ValueError(f"the vault has no coin of value {coin}")
        improved = 0
        ledger = self.ledger
        for amount in range(coin, self.target + 1):
            prev = ledger[amount - coin]
            if prev >= 0 and (ledger[amount] < 0 or prev + 1 < ledger[amount]):
                ledger[amount] = prev + 1
                improved += 1
        if coin not in self.applied:
            self.applied.append(coin)
        return improved

    @tool
    def Best(self, amount: int) -> int:
        """Read the ledger: the fewest coins known so far that pay an amount exactly.

        Args:
            amount (int): an amount between 0 and Target().

        Returns:
            int: the fewest coins found so far for that amount, or -1 if no way is known yet.

        Example Output:
            4
        """
        if not 0 <= amount <= self.target:
            raise IndexError(f"amount {amount} is outside 0..{self.target}")
        return self.ledger[amount]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("CoinCount"))
        target = int(call("Target"))
        for index in range(count):
            coin = int(call("Coin", index=index))
            if coin <= target:  # a coin worth more than the target can never be used
                call("Relax", coin=coin)
        call("Done", answer=int(call("Best", amount=target)))
