from typing import Any

from mcp_gyms import Gym, tool


class TunnelNetworkGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of tunnels in the network."

    def setup(self, task: dict[str, Any]) -> None:
        self.adjacency: list[list[int]] = [list(a) for a in task["node"]]
        self.lookups = 0

    def observe(self) -> str:
        start = "station 1" if self.adjacency else "no station"
        return f"You stand at {start}; {self.lookups} tunnel lookups so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        adjacency = task["node"]
        if not adjacency:
            return 0
        seen, stack, ends = {1}, [1], 0
        while stack:
            station = stack.pop()
            ends += len(adjacency[station - 1])
            for other in adjacency[station - 1]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return ends // 2

    def _check(self, station: int) -> None:
        if not 1 <= station <= len(self.adjacency):
            raise IndexError(f"there is no station {station}")

    @tool
    def TunnelCount(self, station: int) -> int:
        """Count the tunnels leaving a station.

        Args:
            station (int): a station number (stations are numbered from 1).

        Returns:
            int: how many tunnels leave it.

        Example Output:
            3
        """
        self._check(station)
        return len(self.adjacency[station - 1])

    @tool
    def FarEnd(self, station: int, tunnel: int) -> int:
        """Look up the station at the far end of one tunnel leaving a station.

        Args:
            station (int): a station number.
            tunnel (int): which tunnel, between 0 and TunnelCount(station) - 1.

        Returns:
            int: the number of the station at the other end.

        Example Output:
            4
        """
        self._check(station)
        if not 0 <= tunnel < len(self.adjacency[station - 1]):
            raise IndexError(f"station {station} has no tunnel number {tunnel}")
        self.lookups += 1
        return self.adjacency[station - 1][tunnel]

    @tool
    def Halve(self, ends: int) -> int:
        """Halve a count of tunnel ends (every tunnel has two ends).

        Args:
            ends (int): an even number of tunnel ends.

        Returns:
            int: ends // 2.

        Example Output:
            6
        """
        if ends % 2:
            raise ValueError(f"{ends} is odd: every tunnel has two ends")
        return ends // 2

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        seen, stack, ends = {1}, [1], 0
        while stack:
            station = stack.pop()
            count = int(call("TunnelCount", station=station))
            ends += count
            for tunnel in range(count):
                other = int(call("FarEnd", station=station, tunnel=tunnel))
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        call("Done", answer=int(call("Halve", ends=ends)))
