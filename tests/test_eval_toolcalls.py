"""Tool calls from chat completions: native tool_calls and the text formats servers fall back to."""

from __future__ import annotations

import pytest

from eval.toolcalls import extract_calls, parse_arguments, parse_text_calls


def native(name: str, arguments: str, cid: str = "c1") -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_native_calls_win_over_text() -> None:
    msg = {"content": '<tool_call>{"name": "Observe", "arguments": {}}</tool_call>',
           "tool_calls": [native("Coin", '{"index": 2}'), native("Done", '{"answer": 3}', "c2")]}
    calls = extract_calls(msg)
    assert [(c.id, c.name, c.arguments, c.source) for c in calls] == [
        ("c1", "Coin", {"index": 2}, "native"), ("c2", "Done", {"answer": 3}, "native")]
    assert all(c.well_formed for c in calls)


@pytest.mark.parametrize(("raw", "expected"), [
    ("", {}), ("  ", {}), ("{}", {}), ('{"a": 1}', {"a": 1}),
    ('"{\\"a\\": 1}"', {"a": 1}),  # double-encoded
])
def test_parse_arguments_accepts(raw: str, expected: dict) -> None:
    assert parse_arguments(raw) == (expected, None)


@pytest.mark.parametrize(("raw", "fragment"), [
    ('{"a": ', "not valid JSON"), ("[1, 2]", "must be a JSON object"), ("3", "must be a JSON object"),
])
def test_parse_arguments_rejects(raw: str, fragment: str) -> None:
    arguments, error = parse_arguments(raw)
    assert arguments is None and error is not None and fragment in error


def test_native_malformed_arguments_are_kept_with_an_error() -> None:
    (call,) = extract_calls({"tool_calls": [native("Observe", '{"x": ')]})
    assert call.name == "Observe" and call.arguments is None and call.raw_arguments == '{"x": '
    assert not call.well_formed and "not valid JSON" in (call.error or "")


def test_hermes_text_calls() -> None:
    text = ('I will look.\n<tool_call>\n{"name": "Observe", "arguments": {}}\n</tool_call>\n'
            '<tool_call>{"name": "Coin", "arguments": {"index": 1}}</tool_call>')
    calls = parse_text_calls(text)
    assert [(c.name, c.arguments, c.source, c.id) for c in calls] == [
        ("Observe", {}, "text", "text-0"), ("Coin", {"index": 1}, "text", "text-1")]


def test_hermes_unclosed_last_block_and_think_blocks() -> None:
    text = '<think>maybe <tool_call>{"name": "Nope"}</tool_call></think><tool_call>{"name": "Done", "arguments": {"answer": 3}}'
    (call,) = parse_text_calls(text)
    assert (call.name, call.arguments) == ("Done", {"answer": 3})


def test_hermes_malformed_json_names_the_tool_when_it_can() -> None:
    (call,) = parse_text_calls('<tool_call>{"name": "Coin", "arguments": {"index": 1</tool_call>')
    assert call.name == "Coin" and call.arguments is None and "not valid JSON" in (call.error or "")


def test_other_text_formats() -> None:
    assert [(c.name, c.arguments) for c in parse_text_calls('<function=Coin>{"index": 0}</function>')] == [
        ("Coin", {"index": 0})]
    assert [(c.name, c.arguments) for c in parse_text_calls('<|python_tag|>{"name": "Observe", "parameters": {}}')] == [
        ("Observe", {})]
    mistral = '[TOOL_CALLS] [{"name": "Observe", "arguments": {}}, {"name": "Done", "arguments": {"answer": 1}}]'
    assert [c.name for c in parse_text_calls(mistral)] == ["Observe", "Done"]
    fenced = 'Calling:\n```json\n{"name": "Coin", "arguments": {"index": 4}}\n```'
    assert [(c.name, c.arguments) for c in parse_text_calls(fenced)] == [("Coin", {"index": 4})]
    bare = '{"type": "function", "function": {"name": "Done", "arguments": "{\\"answer\\": 2}"}}'
    assert [(c.name, c.arguments) for c in parse_text_calls(bare)] == [("Done", {"answer": 2})]


def test_no_calls_in_plain_text() -> None:
    assert parse_text_calls("The answer is 3.") == []
    assert parse_text_calls("") == [] and parse_text_calls(None) == []
    assert extract_calls({"content": "Use {braces} freely", "tool_calls": None}) == []


def test_a_call_without_a_name_is_reported() -> None:
    (call,) = parse_text_calls('<tool_call>{"arguments": {}}</tool_call>')
    assert call.name == "" and not call.well_formed and "name" in (call.error or "")
