from typing import Any

from mcp_gyms import Gym, tool


class BallotCountGym(Gym):
    answer_type = int
    answer_doc = "The answer is the majority candidate's number, or -1 if there is no majority."

    def setup(self, task: dict[str, Any]) -> None:
        self.votes: list[int] = list(task["votes"])
        self.read = 0

    def observe(self) -> str:
        return f"The box holds {len(self.votes)} ballots; {self.read} ballot reads so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        votes = task["votes"]
        candidate, balance = None, 0
        for vote in votes:
            if balance == 0:
                candidate = vote
            balance += 1 if vote == candidate else -1
        if candidate is not None and votes.count(candidate) * 2 > len(votes):
            return candidate
        return -1

    @tool
    def Count(self) -> int:
        """Return how many ballots are in the box.

        Returns:
            int: the number of ballots.

        Example Output:
            15
        """
        return len(self.votes)

    @tool
    def Ballot(self, index: int) -> int:
        """Read one ballot.

        Args:
            index (int): a ballot between 0 and Count() - 1.

        Returns:
            int: the candidate named on that ballot.

        Example Output:
            4
        """
        if not 0 <= index < len(self.votes):
            raise IndexError(f"ballot {index} is outside 0..{len(self.votes) - 1}")
        self.read += 1
        return self.votes[index]

    @tool
    def Tally(self, candidate: int) -> int:
        """Count the ballots that name a candidate.

        Args:
            candidate (int): a candidate number.

        Returns:
            int: how many ballots name that candidate.

        Example Output:
            8
        """
        return self.votes.count(candidate)

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        count = int(call("Count"))
        candidate, balance = None, 0
        for index in range(count):
            vote = int(call("Ballot", index=index))
            if balance == 0:
                candidate = vote
            balance += 1 if vote == candidate else -1
        answer = -1
        if candidate is not None and int(call("Tally", candidate=candidate)) * 2 > count:
            answer = candidate
        call("Done", answer=answer)
