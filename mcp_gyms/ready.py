"""The ready file of ``codegym serve --http --ready-file PATH``: how a program learns where a server listens.

It is written once every server process answers, atomically (a temporary file in the same folder, then a
rename), so a reader sees either no file or the whole of it; the server removes it again when it stops.
Programs read it with :meth:`ReadyInfo.read` instead of scraping the server's log.
"""

from __future__ import annotations

import contextlib
import os

from pydantic import BaseModel, ConfigDict

__all__ = ["ReadyInfo"]


class ReadyInfo(BaseModel):
    """What ``codegym serve --http --ready-file PATH`` writes once every server process answers.

    ``urls``/``ports`` list every server process (``--procs``), each a full server of the whole bank with its
    own episodes; ``url``/``port`` are the first (the ``--port`` given). ``pid`` is the process to signal
    (SIGTERM stops them all); ``pids`` are the server processes (the same single pid with ``--procs 1``).
    """

    model_config = ConfigDict(extra="ignore")  # a reader keeps working when a later server adds fields

    url: str
    urls: list[str]
    port: int
    ports: list[int]
    pid: int
    pids: list[int]

    @classmethod
    def of(cls, urls: list[str], pids: list[int]) -> ReadyInfo:
        ports = [int(u.rsplit(":", 1)[1]) for u in urls]
        return cls(url=urls[0], urls=urls, port=ports[0], ports=ports, pid=os.getpid(), pids=pids)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: a temporary file in the same folder, then a rename (never a partial file)."""
        target = os.path.abspath(path)
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(self.model_dump_json() + "\n")
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ReadyInfo | None:
        """The ready file's contents, or None while it does not exist yet."""
        try:
            with open(path, encoding="utf-8") as f:
                return cls.model_validate_json(f.read())
        except FileNotFoundError:
            return None
