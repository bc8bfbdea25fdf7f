"""Metro router: find the quickest ride across a hidden metro network by asking about its links.

Original problem (CodeGym team): a metro has stations 0..n-1 joined by two-way links, each taking a
whole number of minutes. Return the least total travel time from station 0 to station n-1, or -1 when
no route joins them. The reference solution is Dijkstra's algorithm with a binary heap.
"""

import heapq
import json
from typing import Any

from mcp_gyms import Gym, tool


class MetroRouterGym(Gym):
    answer_type = int
    answer_doc = "The answer is the least number of minutes from station 0 to the last station, or -1 if no route exists."

    def setup(self, task: dict[str, Any]) -> None:
        self.stations: int = int(task["stations"])
        self.links: list[list[list[int]]] = [[] for _ in range(self.stations)]
        for a, b, minutes in task["links"]:
            self.links[a].append([b, minutes])
            self.links[b].append([a, minutes])
        for row in self.links:
            row.sort()
        self.viewed: list[int] = []

    def observe(self) -> str:
        last = self.stations - 1
        recent = ", ".join(str(s) for s in self.viewed[-10:])
        return (
            f"The metro has {self.stations} stations, numbered 0 to {last}. You start at station 0 and want to "
            f"reach station {last}. Stations whose links you have listed: {len(self.viewed)}"
            f"{f' (most recent: {recent})' if recent else ''}."
        )

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        n = task["stations"]
        adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for a, b, minutes in task["links"]:
            adj[a].append((b, minutes))
            adj[b].append((a, minutes))
        best = [None] * n
        best[0] = 0
        heap = [(0, 0)]
        settled = [False] * n
        while heap:
            d, s = heapq.heappop(heap)
            if settled[s]:
                continue
            settled[s] = True
            if s == n - 1:
                return d
            for t, minutes in adj[s]:
                nd = d + minutes
                if best[t] is None or nd < best[t]:
                    best[t] = nd
                    heapq.heappush(heap, (nd, t))
        return -1

    @tool
    def StationCount(self) -> int:
        """Return the number of stations. Stations are numbered from 0; the destination is the last one.

        Returns:
            int: the number of stations, at least 1.

        Example Output:
            14
        """
        return self.stations

    @tool
    def Links(self, station: int) -> list[list[int]]:
        """List the direct links of one station and how long each ride takes. Links are two-way.

        Args:
            station (int): a station between 0 and StationCount() - 1.

        Returns:
            list[list[int]]: one [neighbour, minutes] pair per link, sorted by neighbour; empty if the
            station has no links.

        Example Output:
            [[3, 7], [8, 2], [11, 5]]
        """
        if not 0 <= station < self.stations:
            raise IndexError(f"station {station} is outside 0..{self.stations - 1}")
        if station not in self.viewed:
            self.viewed.append(station)
        return [list(pair) for pair in self.links[station]]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        goal = int(call("StationCount")) - 1
        best = {0: 0}
        settled = set()
        heap = [(0, 0)]
        answer = -1
        while heap:
            d, s = heapq.heappop(heap)
            if s in settled:
                continue
            settled.add(s)
            if s == goal:
                answer = d
                break
            for t, minutes in json.loads(call("Links", station=s)):
                nd = d + minutes
                if t not in best or nd < best[t]:
                    best[t] = nd
                    heapq.heappush(heap, (nd, t))
        call("Done", answer=answer)
