from typing import Any

from mcp_gyms import Gym, tool


class LoopingTrailGym(Gym):
    answer_type = int
    answer_doc = "The answer is the number of signposts on the loop, or 0 without a loop."

    def setup(self, task: dict[str, Any]) -> None:
        head = task["head"]
        if isinstance(head, dict):
            self.labels: list[int] = list(head["values"])
            self.back: int = int(head.get("pos", -1))
        else:
            self.labels, self.back = list(head), -1
        self.followed = 0

    def observe(self) -> str:
        return f"You have followed {self.followed} signposts so far."

    @classmethod
    def reference_answer(cls, task: dict[str, Any]) -> int:
        head = task["head"]
        if isinstance(head, dict) and head.get("pos", -1) >= 0:
            return len(head["values"]) - head["pos"]
        return 0

    def _check(self, post: int) -> None:
        if not 0 <= post < len(self.labels):
            raise IndexError(f"there is no signpost {post}")

    @tool
    def First(self) -> int:
        """Return the id of the first signpost, or -1 when the trail is empty.

        Returns:
            int: a signpost id, or -1.

        Example Output:
            0
        """
        return 0 if self.labels else -1

    @tool
    def Follow(self, post: int) -> int:
        """Follow a signpost to the one it points to.

        Args:
            post (int): a signpost id.

        Returns:
            int: the id of the next signpost, or -1 when the trail ends there.

        Example Output:
            5
        """
        self._check(post)
        self.followed += 1
        if post + 1 < len(self.labels):
            return post + 1
        return self.back

    @tool
    def Label(self, post: int) -> int:
        """Read the label written on a signpost (labels may repeat).

        Args:
            post (int): a signpost id.

        Returns:
            int: its label.

        Example Output:
            -4
        """
        self._check(post)
        return self.labels[post]

    @staticmethod
    def solve(call) -> None:
        call("Observe")
        post = int(call("First"))
        seen = {}
        step = 0
        while post != -1 and post not in seen:
            seen[post] = step
            post = int(call("Follow", post=post))
            step += 1
        call("Done", answer=0 if post == -1 else step - seen[post])
