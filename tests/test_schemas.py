"""Every schema a gym server shows compiles in strict JSON-Schema validators (draft 2020-12 and draft-07),
uses ``anyOf`` rather than type arrays, and every gym-tool parameter of the default bank has a description
(from its docstring's ``Args:``). The served listing equals the bank's records (checked over MCP in
tests/test_server_plain_clients.py), so checking the records covers what clients see."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError

from mcp_gyms.bank import Bank
from mcp_gyms.gym_server import _START_TOOL_SCHEMA
from mcp_gyms.protocol import STEP_OUTPUT_SCHEMA, StepOutcome

VALIDATORS = [Draft202012Validator, Draft7Validator]


def _all_schemas(bank: Bank) -> list[tuple[str, dict[str, Any]]]:
    found = [("output of every gym tool", STEP_OUTPUT_SCHEMA), ("StartTask input", _START_TOOL_SCHEMA)]
    for gym_id in bank.gym_ids:
        found += [(f"{gym_id}.{t.name} input", t.input_schema) for t in bank.gym(gym_id).tools]
    return found


def _type_arrays(schema: Any) -> list[Any]:
    if isinstance(schema, dict):
        here = [schema["type"]] if isinstance(schema.get("type"), list) else []
        return here + [x for v in schema.values() for x in _type_arrays(v)]
    if isinstance(schema, list):
        return [x for v in schema for x in _type_arrays(v)]
    return []


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
def test_every_schema_compiles_strictly(bank: Bank, validator: Any) -> None:
    schemas = _all_schemas(bank)
    assert len(schemas) > 100
    for where, schema in schemas:
        validator.check_schema(schema)  # raises SchemaError naming the problem
        assert not _type_arrays(schema), f"{where}: a type array (use anyOf)"
        validator(schema).is_valid({})  # resolves every $ref
    # the checker is strict: it does reject a broken schema
    with pytest.raises(SchemaError):
        validator.check_schema({"type": "object", "properties": {"x": {"type": "integr"}}})


def test_output_schema_accepts_what_the_server_sends() -> None:
    for outcome in (StepOutcome(observation="ok"), StepOutcome(observation="Error: x", error="invalid_arguments")):
        for validator in VALIDATORS:
            validator(STEP_OUTPUT_SCHEMA).validate(json.loads(outcome.model_dump_json()))


def test_every_parameter_has_a_description(bank: Bank) -> None:
    count = 0
    for gym_id in bank.gym_ids:
        for t in bank.gym(gym_id).tools:
            assert "Args:" not in t.description, f"{gym_id}.{t.name}: the Args: block is still in the description"
            for name, prop in t.input_schema.get("properties", {}).items():
                count += 1
                assert prop.get("description", "").strip(), f"{gym_id}.{t.name}({name}) has no description"
    assert count >= 108
