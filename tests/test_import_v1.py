"""`codegym import-v1`: environments in the original CodeGym format become verified, playable gyms.

The fixtures (tests/fixtures/v1/) are small environments written for these tests in the original
format: two good ones and one of each kind of breakage the report must name, plus an instances file
with unusable rows mixed in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import anyio
import pytest

from mcp_gyms import cli
from mcp_gyms.bank import Bank
from mcp_gyms.constants import ErrorKind
from mcp_gyms.gym import strip_examples
from mcp_gyms.sandbox import GymCode, SandboxError, SandboxLimits, SandboxPool
from mcp_gyms.v1 import PRELOAD, env_payload, worker_preload
from mcp_gyms.v1_import import ImportOptions, ImportReport, import_v1, main_examples, run
from mcp_gyms.v1_import.docstrings import annotation_for, parse_docstring_args

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v1"
ENVS = FIXTURES / "envs"
INSTANCES = FIXTURES / "instances.jsonl"
SQUARES = "Demo_0001__EvenSquareSumEnv"
WORDS = "Demo_0002__WordFinderEnv"
RUNMIN = "Demo_0009__RunningMinEnv"  # passes Infinity where its docstring says int

#: file -> (status, stage, code of the first problem)
EXPECTED = {
    f"{SQUARES}.py": ("imported", "done", None),
    f"{WORDS}.py": ("imported", "done", None),
    "Demo_0003__BrokenSyntaxEnv.py": ("rejected", "static", "syntax_error"),
    "Demo_0004__MissingClassEnv.py": ("rejected", "static", "missing_class"),
    "Demo_0005__NoDoneEnv.py": ("rejected", "static", "missing_observe_done"),
    "Demo_0006__UndocumentedEnv.py": ("rejected", "static", "undocumented_action"),
    "Demo_0007__PeakValueEnv.py": ("rejected", "sandbox", "oracle_failed"),
    "Demo_0008__MissingModuleEnv.py": ("rejected", "sandbox", "load_failed"),
    "scratch_notes.py": ("skipped", "name", "bad_file_name"),
    f"{RUNMIN}.py": ("imported", "done", None),
}


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The fixtures imported once, through the real command line."""
    out = tmp_path_factory.mktemp("v1") / "bank"
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_gyms.cli", "import-v1", str(ENVS), "--instances", str(INSTANCES),
         "--out", str(out), "--workers", "2"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def report(imported) -> ImportReport:
    return ImportReport.model_validate_json((imported[0] / "import_report.json").read_text())


@pytest.fixture(scope="module")
def bank(imported) -> Bank:
    return Bank.open(imported[0])


@pytest.fixture
async def pool():
    """A pool that can load original-format gyms: gymnasium imported before the workers' lockdown."""
    async with SandboxPool(workers=2, limits=SandboxLimits(time_s=1.5, memory_mb=128), preload=PRELOAD) as p:
        yield p


async def test_a_pool_without_the_v1_preload_cannot_load_an_original_gym(bank):
    """gymnasium is not in every worker: only pools serving original-format gyms import it."""
    gym_id = bank.gym_ids[0]
    assert worker_preload(bank.kinds()) == PRELOAD and worker_preload({"native"}) == ()
    async with SandboxPool(workers=1) as plain:
        with pytest.raises(SandboxError, match="failed to load"):
            await plain.open(GymCode(bank.code(gym_id), bank.gym(gym_id).class_name), bank.task(gym_id, 0).config)


# --- the import and its report ----------------------------------------------------------------------
def test_cli_prints_progress_per_file_and_a_summary(imported):
    stdout = imported[1].stdout
    for file, (status, _, code) in EXPECTED.items():
        line = next(line for line in stdout.splitlines() if line.strip().endswith(file) or f"{file}  tools" in line)
        assert status.upper() in line
        if code:
            assert f"- {code}: " in stdout
    assert "imported 3/10 environments (10 tasks)" in stdout
    assert "instances.jsonl:4" in stdout  # unusable rows are flagged as they are read


def test_report_names_every_failure_and_its_reason(report, imported):
    assert (report.imported, report.rejected, report.skipped, report.internal_errors) == (3, 6, 1, 0)
    assert report.tasks_imported == 10 and report.exit_code() == 0
    by_file = {f.file: f for f in report.files}
    assert set(by_file) == set(EXPECTED)
    for file, (status, stage, code) in EXPECTED.items():
        entry = by_file[file]
        assert (entry.status, entry.stage) == (status, stage), entry
        assert [p.code for p in entry.problems][:1] == ([code] if code else [])
    problem = {f: by_file[f].problems[0].message if by_file[f].problems else "" for f in by_file}
    assert "line 19" in problem["Demo_0003__BrokenSyntaxEnv.py"]
    assert "MisnamedEnv" in problem["Demo_0004__MissingClassEnv.py"]
    assert "no Done" in problem["Demo_0005__NoDoneEnv.py"]
    assert "Left, Right" in problem["Demo_0006__UndocumentedEnv.py"]
    assert "reward 0" in problem["Demo_0007__PeakValueEnv.py"]
    assert "codegym_no_such_module" in problem["Demo_0008__MissingModuleEnv.py"]

    squares, words = by_file[f"{SQUARES}.py"], by_file[f"{WORDS}.py"]
    assert squares.task_sources == {"instances": 5} and words.task_sources == {"main": 3}
    assert "1 duplicate task(s) kept once" in squares.warnings
    assert any("solve_fc_round says 12" in w for w in squares.warnings)
    assert any("could not be read statically" in w and "random_words" in w for w in words.warnings)
    assert any("instances.jsonl:4" in p and "ability" in p for p in report.row_problems)
    assert any("instances.jsonl:6" in p and "not valid JSON" in p for p in report.row_problems)
    assert report.unmatched_rows == {"Demo_9999__GhostEnv": 1}

    markdown = (imported[0] / "import_report.md").read_text()
    for file, (_, _, code) in EXPECTED.items():
        assert file in markdown and (code is None or f"`{code}`" in markdown)
    assert "Demo_9999__GhostEnv" in markdown


def test_bank_holds_only_verified_gyms_with_their_tasks(bank):
    assert sorted(bank.gym_ids) == [SQUARES, WORDS, RUNMIN]
    record = bank.gym(SQUARES)
    assert record.kind == "codegym-v1" and record.class_name == "Imported_EvenSquareSumEnv"
    assert record.provenance.source == "codegym-v1" and record.provenance.problem_id == "Demo_0001"
    assert record.max_steps == 64  # the instances' plugin_call_max_round
    assert record.verification and record.verification.verified
    assert record.task_text.startswith("A row of integers is hidden from you.")  # the instance's user message
    tasks = bank.tasks(SQUARES)
    assert [t.id for t in tasks] == ["inst-0", "inst-1", "inst-2", "inst-3", "inst-4"]
    assert [t.answer for t in tasks] == [56, 168, 0, 120, 56]
    assert [t.oracle_steps for t in tasks] == [21, 17, 13, 27, 17]
    assert tasks[4].config == {"numbers": [2, 4, 5, 6], "strict": True}  # JSON true reached the env
    code = bank.code(SQUARES)
    original = (ENVS / f"{SQUARES}.py").read_text()
    assert code.startswith(original.rstrip("\n"))  # the original source, verbatim, then the adapter
    assert "class Imported_EvenSquareSumEnv(_V1Gym):" in code
    words = bank.gym(WORDS)
    assert "WordFinderEnv" in words.task_text and words.max_steps == 256
    assert [t.config["letter"] for t in bank.tasks(WORDS)] == ["a", "y", "e"]  # from __main__, never run


def test_tool_schemas_are_inferred_from_docstrings(bank):
    tools = {t.name: t for t in bank.gym(WORDS).tools}
    assert list(tools) == ["Observe", "WordCount", "GetWord", "Contains", "Collect", "MeanLength", "Describe",
                           "Inspect", "Done"]
    described = {name: t.input_schema["properties"] for name, t in tools.items()}
    props = {name: {k: {f: v for f, v in p.items() if f != "description"} for k, p in ps.items()}
             for name, ps in described.items()}  # types only; the Args: texts are checked below
    required = {name: t.input_schema.get("required", []) for name, t in tools.items()}
    assert described["GetWord"]["index"]["description"] == "the word's position, counting from 0."
    assert props["WordCount"] == {}
    assert props["GetWord"] == {"index": {"type": "integer"}} and required["GetWord"] == ["index"]
    assert props["Contains"] == {"word": {"type": "string"}, "letter": {"type": "string"}}
    assert props["Collect"]["found"] == {"type": "array", "items": {"type": "string"}}
    assert props["MeanLength"]["lengths"] == {"type": "array", "items": {"type": "integer"}}  # List[int]
    assert props["MeanLength"]["scale"] == {"type": "number", "default": 1.0}
    assert required["MeanLength"] == ["lengths"]
    assert props["Describe"]["info"]["type"] == "object" and props["Describe"]["verbose"] == {"type": "boolean"}
    assert props["Inspect"]["grid"] == {}  # unknown type 'Matrix': permissive
    assert props["Done"]["answer"] == {"type": "array", "items": {"type": "string"}}
    for t in tools.values():
        assert t.input_schema["additionalProperties"] is False
        assert "Example Output" not in t.description
    assert tools["GetWord"].description.startswith("Read one hidden word.") and "Args:" not in tools["GetWord"].description
    assert "the words containing the letter." in described["Done"]["answer"]["description"]
    squares = {t.name: t for t in bank.gym(SQUARES).tools}
    assert squares["Add"].input_schema["required"] == ["a", "b"]
    assert squares["Done"].input_schema["properties"]["answer"]["type"] == "integer"


# --- playing the imported gyms in the sandbox -------------------------------------------------------
async def test_every_imported_task_earns_reward_1_with_the_oracle(bank, pool):
    played = 0
    for gym_id in bank.gym_ids:
        code = GymCode(bank.code(gym_id), bank.gym(gym_id).class_name)
        for task in bank.tasks(gym_id):
            result = await pool.run_oracle(code, task.config, task.seed)
            assert result.error is None and result.reward == 1.0, (gym_id, task.id, result)
            assert result.steps == task.oracle_steps == len(result.calls)
            assert result.calls[-1][0] == "Done"
            played += 1
    assert played == 10


async def test_bad_calls_return_the_envs_own_errors_and_change_nothing(bank, pool):
    code = GymCode(bank.code(SQUARES), bank.gym(SQUARES).class_name)
    ep = await pool.open(code, bank.task(SQUARES, 0).config)
    result = await ep.call("Read", {"index": 50})
    assert result.error == ErrorKind.TOOL_ERROR and not result.done
    assert result.observation == "Error: Read failed: EnvError: index 50 is out of range (0..5); the state is unchanged"
    assert (await ep.call("Read", {"index": 1})).observation == "4"
    # any JSON value reaches the env, as in the original (which parsed the action with json.loads): a string
    # index gets the env's own error, and the state is unchanged
    wrong_type = await ep.call("Read", {"index": "1"})
    assert wrong_type.error == ErrorKind.TOOL_ERROR and "'<=' not supported" in wrong_type.observation
    missing = await ep.call("Add", {"a": 1})
    assert missing.error == ErrorKind.INVALID_ARGUMENTS and "missing required argument 'b'" in missing.observation
    unknown = await ep.call("Teleport", {})
    assert unknown.error == ErrorKind.UNKNOWN_TOOL and "Available tools: Observe, Count" in unknown.observation
    assert (await ep.call("Observe")).observation.startswith("A row of integers is hidden.")
    assert ep.steps == 6

    words = GymCode(bank.code(WORDS), bank.gym(WORDS).class_name)
    ep = await pool.open(words, bank.task(WORDS, 0).config)
    raised = await ep.call("GetWord", {"index": 9})  # the env raises, its own step turns it into "Error: ..."
    assert raised.observation == ("Error: GetWord failed: EnvError: there is no word at position 9; "
                                  "the state is unchanged")
    assert "single character" in (await ep.call("Contains", {"word": "pear", "letter": "ea"})).observation
    assert (await ep.call("MeanLength", {"lengths": [3, 4]})).observation == "3.5"  # default scale forwarded
    assert (await ep.call("MeanLength", {"lengths": [3, 4], "scale": 2})).observation == "7.0"
    assert (await ep.call("Describe", {"info": {"b": 1, "a": 2}, "verbose": False})).observation == '["a", "b"]'


async def test_done_uses_the_reference_answer_and_the_envs_own_comparison(bank, pool):
    words = GymCode(bank.code(WORDS), bank.gym(WORDS).class_name)
    config = bank.task(WORDS, 0).config  # answer: apple, grape, banana
    ep = await pool.open(words, config)
    result = await ep.call("Done", {"answer": ["banana", "apple", "grape"]})  # Done compares sorted lists
    assert result.terminated and result.reward == 1.0 and result.observation == "Answer correct. reward=1"
    ep = await pool.open(words, config)
    assert (await ep.call("Done", {"answer": ["apple"]})).reward == 0.0
    squares = GymCode(bank.code(SQUARES), bank.gym(SQUARES).class_name)
    ep = await pool.open(squares, bank.task(SQUARES, 1).config)
    assert (await ep.call("Done", {"answer": 168})).reward == 1.0


def test_an_imported_env_accepts_every_json_value_its_original_accepted(bank):
    # the env's own solve() passes Infinity for `current (int)`: its oracle earns reward 1 on every instance
    record, tasks = bank.gym(RUNMIN), bank.tasks(RUNMIN)
    assert record.verification and record.verification.verified and len(tasks) == 2
    assert [t.answer for t in tasks] == [-2, 1] and all(t.oracle_steps == 2 + 2 * len(t.config["values"])
                                                        for t in tasks)
    lower = next(t for t in record.tools if t.name == "Lower")
    assert {name: prop["type"] for name, prop in lower.input_schema["properties"].items()} == {
        "current": "integer", "value": "integer"}

    async def main():
        async with SandboxPool(1, preload=PRELOAD) as pool:
            episode = await pool.open(GymCode(bank.code(RUNMIN), record.class_name), tasks[0].config)
            lowered = await episode.call("Lower", '{"current": Infinity, "value": 4}')
            done = await episode.call("Done", '{"answer": -2}')
            return lowered, done

    lowered, done = anyio.run(main)
    assert lowered.observation == "4" and done.reward == 1.0
    assert env_payload({"cap": float("inf")}) == '{"cap": Infinity}'  # json.loads reads it; no literal does


def test_imported_bank_passes_codegym_verify(imported, capsys):
    assert cli.main(["verify", str(imported[0]), "--workers", "2"]) == 0
    assert "3/3 gyms verified" in capsys.readouterr().out


# --- more cases, on environments derived from the fixtures ------------------------------------------------
def _derive(folder: Path, name: str, replacements: dict[str, str], source: str = f"{SQUARES}.py") -> None:
    text = (ENVS / source).read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    (folder / name).write_text(text)


async def test_oracle_must_play_through_step_and_tasks_file_rows(tmp_path):
    envs = tmp_path / "envs"
    envs.mkdir()
    _derive(envs, "T_1__EvenSquareSumEnv.py", {
        'count = int(self.step(json.dumps({"name": "Count", "parameters": {}}))[1])': "count = len(self.numbers)"})
    _derive(envs, "T_2__RenamedDoneEnv.py", {
        "EvenSquareSumEnv": "RenamedDoneEnv", "def Done(self, answer):": "def Done(self, result):",
        "answer (int): the sum": "result (int): the sum", "correct = answer == ref": "correct = result == ref",
        '{"name": "Done", "parameters": {"answer": total}}': '{"name": "Done", "parameters": {"result": total}}',
        "msg = self.Done(params[\"answer\"])": "msg = self.Done(params[\"result\"])"})
    _derive(envs, "T_3__DynamicEnv.py", {
        "EvenSquareSumEnv": "DynamicEnv", "self.func_mapping = {": "mapping = {",
        "        }\n\n        if env_str": "        }\n        self.func_mapping = dict(mapping)\n\n        if env_str"})
    _derive(envs, "T_4__NosyObserveEnv.py", {
        "EvenSquareSumEnv": "NosyObserveEnv", "def Observe(self):": "def Observe(self, detail, level=1):"})
    tasks = tmp_path / "tasks.jsonl"
    rows = [{"env": "EvenSquareSumEnv", "task": {"numbers": [2, 4, 6, 8, 10]}},
            {"env": "T_2__RenamedDoneEnv", "task": {"numbers": [1, 2, 3, 4, 5, 6]}, "difficulty": "hard"},
            {"env": "T_2__RenamedDoneEnv", "task": [1, 2]}]
    tasks.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = await import_v1(ImportOptions(env_dir=envs, out=tmp_path / "bank", tasks_file=tasks, workers=2,
                                           quiet=True))
    by_file = {f.file: f for f in report.files}
    cheat = by_file["T_1__EvenSquareSumEnv.py"]
    assert cheat.status == "rejected" and cheat.problems[0].code == "oracle_failed"
    assert "solve() read self.numbers directly" in cheat.problems[0].message
    renamed = by_file["T_2__RenamedDoneEnv.py"]
    assert renamed.status == "imported" and renamed.task_sources == {"tasks": 1}
    assert any("Done's parameter is 'result'" in w for w in renamed.warnings)
    dynamic = by_file["T_3__DynamicEnv.py"]
    assert dynamic.problems[0].code == "no_func_mapping" and "dict literal" in dynamic.problems[0].message
    nosy = by_file["T_4__NosyObserveEnv.py"].problems[0]
    assert nosy.code == "bad_observe" and "requires parameters (detail)" in nosy.message
    assert any("tasks.jsonl:3" in p for p in report.row_problems)
    bank = Bank.open(tmp_path / "bank")
    assert bank.gym_ids == ["T_2__RenamedDoneEnv"] and bank.task("T_2__RenamedDoneEnv", 0).difficulty == "hard"


def test_exit_status_rule(tmp_path, capsys):
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    for name in ("Demo_0003__BrokenSyntaxEnv.py", "Demo_0005__NoDoneEnv.py"):
        (only_broken / name).write_text((ENVS / name).read_text())

    def args(env_dir: Path, **extra) -> Namespace:
        return Namespace(env_dir=str(env_dir), out=str(tmp_path / "out"), instances=None, tasks=None, workers=1,
                         max_tasks=None, quiet=True, **extra)

    assert run(args(only_broken)) == 1  # nothing imported
    assert "imported 0/2 environments" in capsys.readouterr().out
    assert run(args(tmp_path / "nowhere")) == 2
    assert "no such folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(args(empty)) == 2
    assert "no .py files" in capsys.readouterr().err
    bad_instances = args(only_broken)
    bad_instances.instances = str(tmp_path / "missing.jsonl")
    assert run(bad_instances) == 2
    assert "missing.jsonl: cannot read" in capsys.readouterr().err


# --- the static parts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, annotation", [
    ("int", "int"), ("integer", "int"), ("float", "float"), ("str", "str"), ("bool", "bool"),
    ("list", "list[_Any]"), ("list[int]", "list[int]"), ("List[str]", "list[str]"),
    ("list[list[int]]", "list[list[int]]"), ("dict", "dict[str, _Any]"), ("Dict[str, int]", "dict[str, int]"),
    ("Dict[int, List[int]]", "dict[str, list[int]]"), ("tuple", "list[_Any]"), ("Tuple[int, int]", "tuple[int, int]"),
    ("tuple[int, ...]", "list[int]"), ("Optional[int]", "int | None"), ("int or str", "int | str"),
    ("Union[int, float]", "int | float"), ("str | None", "str | None"), ("set", "list[_Any]"),
    ("list of int", "list[int]"), ("array of strings", "list[str]"), ("list of list of int", "list[list[int]]"),
    ("Matrix", "_Any"), ("List[Node]", "list[_Any]"), ("", "_Any"), ("Any", "_Any"), ("int or Foo", "_Any"),
])
def test_annotation_for_docstring_types(text, annotation):
    assert annotation_for(text) == annotation


def test_parse_docstring_args_reads_entries_and_continuations():
    doc = """Do something.

    Args:
        grid (List[List[int]]): the grid,
            one row per line.
        k (int, optional): how many. Defaults to 2.
        name: no type given.
        - flag (bool): a bulleted entry.

    Returns:
        str: the result.
    """
    entries = parse_docstring_args(doc)
    assert [(e.name, e.type_text, e.optional) for e in entries] == [
        ("grid", "List[List[int]]", False), ("k", "int", True), ("name", "", False),
        ("flag", "bool", False)]
    assert entries[0].description == "the grid, one row per line."
    assert parse_docstring_args("No sections at all.") == []


def test_v1_docstrings_lose_their_example_output():
    doc = "\n    Count.\n\n    Args:\n        i (int): x.\n\n    Returns:\n        str: n.\n\n    Example Output:\n        \"4\"\n    "
    assert strip_examples(doc) == "Count.\n\nArgs:\n    i (int): x.\n\nReturns:\n    str: n."


def test_main_examples_are_read_without_running_the_file():
    tree = ast.parse((ENVS / f"{WORDS}.py").read_text())
    warnings: list[str] = []
    configs = main_examples(tree, "WordFinderEnv", warnings)
    assert [c["letter"] for c in configs] == ["a", "y", "e"] and len(warnings) == 1
    loop = ast.parse(
        "import json\nif __name__ == '__main__':\n"
        "    cases = [[1, 2], [3]]\n"
        "    for c in cases:\n"
        "        E.from_env_str(f'E@{{\"xs\": {c}, \"flag\": {True!r}}}')\n"
        "    E.from_env_str('E@' + json.dumps({'xs': [], 'note': 'a@b'}))\n"
        "    E.from_env_str('Other@{}')\n"
        "    E.from_env_str(open('x').read())\n")
    warnings = []
    assert main_examples(loop, "E", warnings) == [
        {"xs": [1, 2], "flag": True}, {"xs": [3], "flag": True}, {"xs": [], "note": "a@b"}]
    assert "2 __main__ example(s)" in warnings[0]


def test_main_examples_cannot_make_the_host_allocate_much():
    """Doubling a list, a huge format width, a huge json indent or nested loops are refused, not run."""
    doubling = "\n".join(["    xs = [1, 2, 3, 4, 5, 6, 7, 8]"] + ["    xs = xs + xs"] * 40)
    source = ("import json\nif __name__ == '__main__':\n" + doubling + "\n"
              "    E.from_env_str('E@' + json.dumps({'xs': xs}))\n"
              "    E.from_env_str(f'E@{{\"s\": \"{1:>999999999}\"}}')\n"
              "    E.from_env_str('E@{{\"s\": \"{:>999999999}\"}}'.format(1))\n"
              "    E.from_env_str('E@' + json.dumps({'a': 1}, indent=10**9))\n"
              "    E.from_env_str('E@' + json.dumps({'a': 1}))\n"
              "    r = [0] * 1 if False else list(range(3))\n")
    warnings: list[str] = []
    assert main_examples(ast.parse(source), "E", warnings) == [{"a": 1}]
    assert "4 __main__ example(s)" in warnings[0]
    loops = ("if __name__ == '__main__':\n    r = [" + ", ".join(map(str, range(200))) + "]\n"
             "    for a in r:\n        for b in r:\n            for c in r:\n"
             "                E.from_env_str('E@{}')\n")
    warnings = []
    assert len(main_examples(ast.parse(loops), "E", warnings)) == 1000
    assert warnings == ["only the first 1000 __main__ examples were read"]


def test_env_payload_is_json_when_python_reads_it_the_same():
    assert env_payload({"xs": [1, 2], "s": "a"}) == '{"xs": [1, 2], "s": "a"}'
    payload = env_payload({"flag": True, "none": None})
    assert ast.literal_eval(payload) == {"flag": True, "none": None}


# --- serving over MCP --------------------------------------------------------------------------------------------------
async def test_imported_gyms_are_served_over_mcp_stdio_and_the_oracle_wins(bank, imported, pool):
    """`codegym serve GYM --bank BANK` over real stdio: the env's tools, its errors as isError results, and
    every task won by replaying the oracle's calls through tools/call."""
    pytest.importorskip("mcp_gyms.server")
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    for gym_id in (SQUARES, WORDS):
        record = bank.gym(gym_id)
        code = GymCode(bank.code(gym_id), record.class_name)
        params = StdioServerParameters(command=sys.executable, cwd=str(ROOT), args=[
            "-m", "mcp_gyms.cli", "serve", gym_id, "--bank", str(imported[0])])
        with anyio.fail_after(60):
            async with Client(params) as client:
                listed = {t.name: t for t in (await client.list_tools()).tools}
                assert [t.name for t in record.tools] == [n for n in listed if n != "StartTask"]
                for tool in record.tools:
                    assert listed[tool.name].input_schema == tool.input_schema
                bad = await client.call_tool("Observe", {"unexpected": 1})
                assert bad.is_error and "unexpected argument 'unexpected'" in bad.content[0].text
                tool, arguments, message = {SQUARES: ("Read", {"index": 99}, "index 99 is out of range"),
                                            WORDS: ("GetWord", {"index": 99}, "no word at position 99")}[gym_id]
                env_error = await client.call_tool(tool, arguments)
                assert env_error.is_error and message in env_error.content[0].text
                assert env_error.structured_content["error"] == ErrorKind.TOOL_ERROR
                for index, task in enumerate(bank.tasks(gym_id)):
                    await client.call_tool("StartTask", {"task": index})
                    plan = await pool.run_oracle(code, task.config, task.seed)
                    for name, arguments in plan.calls:
                        result = await client.call_tool(name, arguments)
                        assert not result.is_error, result.content[0].text
                    outcome = result.structured_content
                    assert outcome["done"] and outcome["reward"] == 1.0 and outcome["steps"] == task.oracle_steps
