"""Meeting planner: find how many rooms a hidden schedule of meetings needs.

Original problem (CodeGym team): each meeting occupies a room from its start time up to, but not
including, its end time, so a meeting that ends at time t and one that starts at time t can share a
room. Return the least number of rooms that hosts every meeting, which is the greatest number of
meetings in progress at any one time. The reference solution sweeps the sorted start and end times.
"""

import json
from typing import Any

from mcp_gyms import Gym, tool


class MeetingPlannerGym(Gym):
    answer_type = int
    answer_doc = "The answer is the least number of rooms needed, an integer."

    def setup(self, task: dict[str, Any]) -> None:
        self.meetings: list[list[int]] = [list(m) for m in task["meetings"]]
        self.read: list[int] = []

    def observe(self) -> str:
        recent = list(dict.fromkeys(reversed(self.read)))[:8]
        shown = ", ".join(f"#{i}:[{self.meetings[i][0]}, {self.meetings[i][1]})" for i in sorted(recent))
        return (
            f"The schedule has {len(self.meetings)} meetings. Distinct meetings read so far: "
            f"{len(set(self.read))}. Most recently read (index:[start, end)): {shown or 'none'}."
        )

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        starts = sorted(m[0] for m in task["meetings"])
        ends = sorted(m[1] for m in task["meetings"])
        rooms = best = 0
        j = 0
        for s in starts:
            while j < len(ends) and ends[j] <= s:
                j += 1
                rooms -= 1
            rooms += 1
            best = max(best, rooms)
        return best

    @tool
    def Count(self) -> int:
        """Return the number of meetings in the schedule.

        Returns:
            int: the number of meetings, at least 1.

        Example Output:
            14
        """
        return len(self.meetings)

    @tool
    def Meeting(self, index: int) -> list[int]:
        """Read one meeting of the schedule (meetings are numbered from 0, in no particular order).

        Args:
            index (int): a meeting number between 0 and Count() - 1.

        Returns:
            list[int]: [start, end]; the meeting holds its room from start up to, but not including, end.

        Example Output:
            [540, 600]
        """
        if not 0 <= index < len(self.meetings):
            raise IndexError(f"meeting {index} is outside 0..{len(self.meetings) - 1}")
        self.read.append(index)
        return list(self.meetings[index])

    @tool
    def BusyAt(self, time: int) -> int:
        """Count the meetings in progress at one moment.

        Args:
            time (int): a moment, a non-negative integer.

        Returns:
            int: how many meetings have start <= time < end.

        Example Output:
            3
        """
        if time < 0:
            raise ValueError(f"time must be non-negative, got {time}")
        return sum(1 for start, end in self.meetings if start <= time < end)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        events = []
        for i in range(count):
            start, end = json.loads(call("Meeting", index=i))
            events.append((start, 1))
            events.append((end, -1))
        events.sort()  # at equal times the end (-1) comes before the start (+1)
        rooms = best = 0
        for _, delta in events:
            rooms += delta
            best = max(best, rooms)
        call("Done", answer=best)
