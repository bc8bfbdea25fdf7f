"""The scripted OpenAI-compatible endpoint of the eval tests, as a process of its own (for bench_eval.py).

It serves ``tests/fixtures/eval/scripted_openai.py``'s :class:`ScriptedLLM` (imported, not copied): an
instant model whose answers follow a script named by the request's ``model`` (``native``: Observe, then
``Done(3)``). Prints ``serving on http://127.0.0.1:PORT/v1`` on stderr once ready::

    python benchmarks/scripted_llm.py --port 0
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from fixtures.eval.scripted_openai import ScriptedLLM  # noqa: E402

from benchmarks.common import UVICORN, listen_socket  # noqa: E402


def main() -> None:
    """Bind 127.0.0.1, serve the scripted model until killed."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    scripted = ScriptedLLM()
    scripted.requests = _Discard()  # type: ignore[assignment]  # a benchmark keeps no transcript
    sock = listen_socket(args.port)
    port = sock.getsockname()[1]

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        print(f"serving on http://127.0.0.1:{port}/v1", file=sys.stderr, flush=True)
        yield

    scripted.app.router.lifespan_context = lifespan
    config = uvicorn.Config(scripted.app, **UVICORN)  # type: ignore[arg-type]
    uvicorn.Server(config).run(sockets=[sock])


class _Discard(list):  # type: ignore[type-arg]
    """A list that forgets what is appended (the fixture records every request for the tests' asserts)."""

    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
