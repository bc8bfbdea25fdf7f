"""Programs that run *inside* a sandbox worker, sent there as source text.

The pipeline never imports these modules: :mod:`synthesis.execution` reads their source and hands it
to :meth:`mcp_gyms.sandbox.SandboxPool.execute`, which runs ``main(**args)`` in a locked-down worker.
Each file is self-contained (standard library only) and its ``main`` returns a JSON-serialisable value.

- ``pytest_lite.py`` — run a problem's pytest-style tests against its reference solution.
- ``call_solution.py`` — call a solution's entry function on one input and return its answer as JSON.
"""
