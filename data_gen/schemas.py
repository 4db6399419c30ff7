"""One JSON Schema validator for every reply and record: jsonschema's, with jsonschema-rs answering ``is_valid``.

Every teacher reply is checked against its task's schema when it arrives and every training record against its
format's schema when it is written: thousands of checks a second at a teacher's full rate, where jsonschema costs a
few hundred microseconds each and the client's one event loop is the limit (docs/benchmarks.md). jsonschema-rs
compiles the same Draft 2020-12 schema and says valid or not in microseconds; everything else (the errors, the
schema-guided repairs, the one-line messages) stays jsonschema's, so a rejection reads as before. A test checks that
the two agree on every schema and fixture of the repository.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


class SchemaValidator:
    """``Draft202012Validator``'s ``is_valid`` and ``iter_errors`` over one schema (checked when built)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self.reference = Draft202012Validator(schema)  # the errors, with their paths and messages
        self._compiled = jsonschema_rs.Draft202012Validator(schema)

    def is_valid(self, instance: Any) -> bool:
        return self._compiled.is_valid(instance)

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        return self.reference.iter_errors(instance)
