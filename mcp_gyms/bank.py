"""The bank: the on-disk format of verified gyms and their tasks.

A bank is a folder a person can read and diff::

    BANK/
      bank.json                 index: format version + one summary row per gym (no code)
      gyms/<gym_id>/gym.json    the gym record: task text, tools, provenance, verification report
      gyms/<gym_id>/gym.py      the gym code (untrusted: it only ever runs in the sandbox)
      gyms/<gym_id>/tasks.jsonl one task per line: id, difficulty, configuration, answer, oracle steps

Opening a bank reads ``bank.json`` only, so a bank of the paper's size (13k gyms, 86k tasks) opens
in well under a second; gym records, code and tasks load on demand. Every record is validated with
pydantic on load; a bad record raises :class:`BankError` naming the file (and line) at fault.
Writes are atomic (temp file + rename): a crash never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .constants import DEFAULT_MAX_STEPS, DIFFICULTIES, Difficulty
from .files import atomic_write

__all__ = [
    "BANK_FORMAT",
    "Bank",
    "BankError",
    "GymRecord",
    "GymSummary",
    "Provenance",
    "TaskRecord",
    "ToolRecord",
    "VerificationReport",
    "default_bank_path",
]

BANK_FORMAT = "codegym-bank/1"
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"


class BankError(ValueError):
    """A bank that cannot be read or written; the message names the file and record at fault."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolRecord(_Record):
    """A tool as the agent sees it."""

    name: str
    description: str
    input_schema: dict[str, Any]


class Provenance(_Record):
    """Where a gym came from."""

    source: str = Field(description="corpus or author, e.g. 'codegym-team', 'kodcode', 'codegym-v1'")
    problem_id: str | None = None
    notes: str = ""


class VerificationReport(_Record):
    """The outcome of ``codegym verify`` on a gym."""

    verified: bool
    verified_at: str
    checks: dict[str, str] = Field(default_factory=dict, description="check name -> 'ok' or the reason it failed")
    tasks_total: int = 0
    tasks_kept: int = 0
    dropped_tasks: dict[str, str] = Field(default_factory=dict, description="task id -> why it was dropped")


class GymRecord(_Record):
    """Everything about a gym except its code and tasks."""

    id: str = Field(pattern=_ID)
    title: str
    class_name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    task_text: str = Field(min_length=1, description="what the agent is asked to do (the user prompt)")
    kind: Literal["native", "codegym-v1"] = "native"
    code_file: str = Field("gym.py", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*\.py$",
                           description="a file name inside the gym's folder (no path)")
    code_sha256: str | None = None
    max_steps: int = Field(DEFAULT_MAX_STEPS, ge=1)
    tools: list[ToolRecord] = Field(default_factory=list)
    provenance: Provenance
    verification: VerificationReport | None = None


class TaskRecord(_Record):
    """One task configuration (a unit-test input of the original problem)."""

    id: str = Field(pattern=_ID)
    difficulty: Difficulty
    config: dict[str, Any]
    seed: int = 0
    answer: Any = Field(None, description="reference answer of the original solution, when known")
    oracle_steps: int | None = Field(None, ge=0)


class GymSummary(_Record):
    """One row of the bank index."""

    id: str = Field(pattern=_ID)
    title: str
    kind: Literal["native", "codegym-v1"] = "native"
    tools: int
    tasks: int
    difficulty: dict[str, int]
    mean_oracle_steps: float | None = None
    verified: bool = False


class BankIndex(_Record):
    format: Literal["codegym-bank/1"] = BANK_FORMAT
    name: str = ""
    updated_at: str = ""
    gyms: list[GymSummary] = Field(default_factory=list)


def default_bank_path() -> Path:
    """The bank bundled with the package."""
    return Path(__file__).resolve().parent / "default_bank"


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _validation_problem(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(record)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class Bank:
    """A bank on disk. Cheap to open; loads gym records, code and tasks on demand."""

    def __init__(self, root: str | os.PathLike[str], index: BankIndex) -> None:
        self.root = Path(root)
        self.index = index
        self._by_id = {g.id: g for g in index.gyms}
        self._records: dict[str, GymRecord] = {}
        self._tasks: dict[str, list[TaskRecord]] = {}
        self._defer_index = 0

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Bank:
        """Open a bank (the bundled default when ``root`` is None). Reads the index only."""
        root = Path(root) if root is not None else default_bank_path()
        index_path = root / "bank.json"
        if not index_path.is_file():
            raise BankError(f"{root}: not a bank (no bank.json); create one with Bank.create()")
        try:
            raw = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BankError(f"{index_path}: cannot read the index: {exc}") from exc
        if isinstance(raw, dict) and raw.get("format") != BANK_FORMAT:
            raise BankError(f"{index_path}: unsupported bank format {raw.get('format')!r} (expected {BANK_FORMAT!r})")
        try:
            index = BankIndex.model_validate(raw)
        except ValidationError as exc:
            raise BankError(f"{index_path}: invalid index: {_validation_problem(exc)}") from exc
        return cls(root, index)

    @classmethod
    def create(cls, root: str | os.PathLike[str], name: str = "") -> Bank:
        """Create an empty bank at ``root`` (which must not already hold one)."""
        root = Path(root)
        if (root / "bank.json").exists():
            raise BankError(f"{root}: a bank already exists here")
        bank = cls(root, BankIndex(name=name or root.name, updated_at=_now()))
        bank.write_index()
        return bank

    # --- reading ------------------------------------------------------------------------------
    @property
    def gym_ids(self) -> list[str]:
        return list(self._by_id)

    def __contains__(self, gym_id: object) -> bool:
        return gym_id in self._by_id

    def kinds(self, gym_ids: Iterable[str] | None = None) -> set[str]:
        """The gym kinds (``native``, ``codegym-v1``) among ``gym_ids`` (default: the whole bank); unknown
        ids are ignored (the caller reports them)."""
        ids = self._by_id if gym_ids is None else [g for g in gym_ids if g in self._by_id]
        return {self._by_id[g].kind for g in ids}

    def __len__(self) -> int:
        return len(self._by_id)

    def summary(self, gym_id: str) -> GymSummary:
        return self._by_id[self._check_id(gym_id)]

    def gym_dir(self, gym_id: str) -> Path:
        return self.root / "gyms" / gym_id

    def gym(self, gym_id: str) -> GymRecord:
        """The gym record (validated)."""
        self._check_id(gym_id)
        if gym_id not in self._records:
            path = self.gym_dir(gym_id) / "gym.json"
            self._records[gym_id] = _load_record(path, GymRecord)
            if self._records[gym_id].id != gym_id:
                raise BankError(f"{path}: id {self._records[gym_id].id!r} does not match its folder {gym_id!r}")
        return self._records[gym_id]

    def code(self, gym_id: str) -> str:
        """The gym's code, as text. Never import it in this process: run it in the sandbox."""
        record = self.gym(gym_id)
        path = self.gym_dir(gym_id) / record.code_file
        try:
            code = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BankError(f"{path}: cannot read gym code: {exc}") from exc
        if record.code_sha256 and hashlib.sha256(code.encode()).hexdigest() != record.code_sha256:
            raise BankError(f"{path}: code does not match code_sha256 in gym.json (edited after verification?)")
        return code

    def tasks(self, gym_id: str) -> list[TaskRecord]:
        """The gym's tasks, in file order (validated)."""
        self._check_id(gym_id)
        if gym_id not in self._tasks:
            self._tasks[gym_id] = read_tasks(self.gym_dir(gym_id) / "tasks.jsonl")
        return self._tasks[gym_id]

    def task(self, gym_id: str, task: int | str) -> TaskRecord:
        """A task by position (int) or id (str)."""
        tasks = self.tasks(gym_id)
        if isinstance(task, int):
            if not 0 <= task < len(tasks):
                raise BankError(f"gym {gym_id!r} has {len(tasks)} tasks; there is no task #{task}")
            return tasks[task]
        for t in tasks:
            if t.id == task:
                return t
        raise BankError(f"gym {gym_id!r} has no task with id {task!r}")

    def _check_id(self, gym_id: str) -> str:
        if gym_id not in self._by_id:
            known = ", ".join(sorted(self._by_id)[:20])
            raise BankError(f"no gym {gym_id!r} in bank {self.root} (gyms: {known}{', ...' if len(self) > 20 else ''})")
        return gym_id

    # --- writing ------------------------------------------------------------------------------
    def put_gym(self, record: GymRecord, code: str, tasks: Iterable[TaskRecord]) -> None:
        """Write (or replace) a gym: code, tasks, then record, then the index row. Atomic per file."""
        tasks = list(tasks)
        ids = Counter(t.id for t in tasks)
        if dupes := [i for i, n in ids.items() if n > 1]:
            raise BankError(f"gym {record.id!r}: duplicate task ids {dupes[:5]}")
        record = record.model_copy(update={"code_sha256": hashlib.sha256(code.encode()).hexdigest()})
        folder = self.gym_dir(record.id)
        atomic_write(folder / record.code_file, code)
        atomic_write(folder / "tasks.jsonl", "".join(t.model_dump_json() + "\n" for t in tasks))
        atomic_write(folder / "gym.json", record.model_dump_json(indent=2) + "\n")
        self._records[record.id] = record
        self._tasks[record.id] = tasks
        self._by_id[record.id] = summarise(record, tasks)
        self._index_changed()

    def remove_gym(self, gym_id: str) -> None:
        """Drop a gym from the index (its files stay, for a person to inspect)."""
        self._by_id.pop(self._check_id(gym_id))
        self._index_changed()

    @contextmanager
    def batch(self) -> Iterator[Bank]:
        """Defer index writes to the end of the block (for writing thousands of gyms).

        Gym files are still written one by one; the index is written once when the block exits,
        also when it exits with an error, so it lists exactly the gyms whose files were written."""
        self._defer_index += 1
        try:
            yield self
        finally:
            self._defer_index -= 1
            if not self._defer_index:
                self.write_index()

    def _index_changed(self) -> None:
        if not self._defer_index:
            self.write_index()

    def write_index(self) -> None:
        self.index = BankIndex(name=self.index.name, updated_at=_now(), gyms=list(self._by_id.values()))
        atomic_write(self.root / "bank.json", self.index.model_dump_json(indent=1) + "\n")

    def content_digest(self, gym_id: str) -> str:
        """A hash of one gym's content: record, code and tasks, without the verification timestamp.

        Two banks hold the same gym when the digests agree (e.g. a rebuilt gym and its bundled copy)."""
        record = self.gym(gym_id)
        if record.verification is not None:
            record = record.model_copy(update={"verification": record.verification.model_copy(
                update={"verified_at": ""})})
        blob = json.dumps([record.model_dump(mode="json"), self.code(gym_id),
                           [t.model_dump(mode="json") for t in self.tasks(gym_id)]], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @cached_property
    def digest(self) -> str:
        """A short content hash of the index (identifies a bank version)."""
        return hashlib.sha256((self.root / "bank.json").read_bytes()).hexdigest()[:12]


def summarise(record: GymRecord, tasks: list[TaskRecord]) -> GymSummary:
    steps = [t.oracle_steps for t in tasks if t.oracle_steps is not None]
    mix = Counter(t.difficulty for t in tasks)
    return GymSummary(
        id=record.id,
        title=record.title,
        kind=record.kind,
        tools=len(record.tools),
        tasks=len(tasks),
        difficulty={d: mix.get(d, 0) for d in DIFFICULTIES},
        mean_oracle_steps=round(sum(steps) / len(steps), 2) if steps else None,
        verified=bool(record.verification and record.verification.verified),
    )


def _load_record(path: Path, model: type[BaseModel]) -> Any:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BankError(f"{path}: cannot read: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BankError(f"{path}: invalid {model.__name__}: {_validation_problem(exc)}") from exc


def read_tasks(path: Path) -> list[TaskRecord]:
    """Read and validate a tasks.jsonl file; a bad line raises BankError naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BankError(f"{path}: cannot read tasks: {exc}") from exc
    tasks = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            tasks.append(TaskRecord.model_validate_json(line))
        except ValidationError as exc:
            raise BankError(f"{path}:{number}: invalid task: {_validation_problem(exc)}") from exc
    return tasks


def slug(text: str) -> str:
    """A bank-safe id made from arbitrary text."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-")[:128] or "gym"
