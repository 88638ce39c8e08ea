"""Step 2, options: the fields of an upload read strictly, so a typo is an error, never a silent default.

Fields come from the multipart form, or from one JSON `options` field (a form field wins).
`only()` refuses fields the endpoint does not take (app/flow/fields.py), a form field is given
once (`choices` may repeat), integers are integers (not 1.5, not true), flags are booleans.
Every refusal is `invalid_request` (400) naming the field. What the values mean for the
request is app/flow/tasks.py's business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from app.choices import check_choices
from app.flow.fields import LIST_FIELDS
from app.uploads import Upload
from ctscribe.errors import CtscribeError, ErrorCode


def invalid(message: str) -> CtscribeError:
    return CtscribeError(ErrorCode.INVALID_REQUEST, message)


class Options:
    """The option fields of one upload; `warnings` collects what the response should tell."""

    def __init__(self, upload: Upload):
        self.values: dict[str, Any] = {}
        self.warnings: list[str] = []
        self._json_names: set[str] = set()
        raw = upload.field("options")
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:  # JSONDecodeError, or an integer past Python's digit limit
                raise invalid("options: not valid JSON") from None
            if not isinstance(parsed, dict):
                raise invalid("options: expected a JSON object")
            self.values.update(parsed)
            self._json_names = set(parsed)
        self._form_names = set(upload.fields)
        self._repeated = sorted(n for n, v in upload.fields.items() if len(v) > 1 and n not in LIST_FIELDS)
        for name, values in upload.fields.items():
            if name != "options":
                self.values[name] = values if name in LIST_FIELDS else values[-1]

    def only(self, accepted: Iterable[str]) -> Options:
        """Refuse any field outside `accepted` (the endpoint's documented ones)."""
        accepted = set(accepted)
        unknown = (self._form_names - accepted) | (self._json_names - (accepted - {"options"}))
        if "file" in unknown:
            raise invalid("file: send the CT as a file part (with a filename), not as a text field")
        if unknown:
            names = ", ".join(_name(n) for n in sorted(unknown)[:5])
            raise invalid(f"unknown field(s) {names}; this endpoint takes {', '.join(sorted(accepted))} "
                          "and the CT file(s) as 'file'")
        if self._repeated:
            raise invalid(f"{self._repeated[0]}: given more than once")
        return self

    def str(self, name: str, max_chars: int) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise invalid(f"{name}: expected a string")
        if len(value) > max_chars:
            raise invalid(f"{name}: longer than {max_chars} characters")
        return value

    def number(self, name: str, kind: type, lo: float, hi: float) -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        number = _integer(name, value) if kind is int else _real(name, value)
        if not lo <= number <= hi:
            raise invalid(f"{name}: must be between {lo:g} and {hi:g}")
        return number

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if value is None or isinstance(value, bool):
            return bool(value)
        text = value.strip().lower() if isinstance(value, str) else None
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("", "0", "false", "no", "off"):
            return False
        raise invalid(f"{name}: expected true or false")

    def choices(self) -> tuple[str, ...] | None:
        value = self.values.get("choices")
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if len(items) == 1 and isinstance(items[0], str) and items[0].lstrip().startswith("["):
            try:
                items = json.loads(items[0])
            except ValueError:
                raise invalid("choices: not a valid JSON list") from None
        if not isinstance(items, list):
            raise invalid("choices: expected a list of strings")
        return check_choices(items)


def _name(name: str) -> str:
    """A client-sent field name, quoted and cut short, for an error message."""
    return repr(name[:40] + ("..." if len(name) > 40 else ""))


def _integer(name: str, value: Any) -> int:
    # JSON true/false are ints to Python and 1.5 would truncate: neither is an integer here.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,20}\s*", value):
        return int(value)
    raise invalid(f"{name}: expected an integer, got {_shown(value)}")


def _real(name: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e300 else float("inf")  # a 400-digit JSON int: out of range
    elif isinstance(value, str) and len(value) <= 64:
        try:
            number = float(value.strip())
        except ValueError:
            raise invalid(f"{name}: expected a number, got {_shown(value)}") from None
    else:
        raise invalid(f"{name}: expected a number, got {_shown(value)}")
    if number != number:  # NaN
        raise invalid(f"{name}: not a number")
    return number


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:20] + ("..." if len(value) > 20 else ""))
    return f"a JSON {type(value).__name__.replace('dict', 'object').replace('list', 'array')}"
