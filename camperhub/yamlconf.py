"""Load YAML configuration into pydantic models, with errors that name file, line and key.

Why not plain ``yaml.safe_load``: a person fixing a register map or an edge
config on a Pi needs "devices/epever.yaml:42: registers[7].scale: ..." and not
a Python traceback. PyYAML's node tree keeps the position of every key, so we
build the data from the nodes and remember where each path came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]
_KEY_RE = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(top level)'}: {self.message}"


class ConfigError(Exception):
    """A configuration file that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class _Loader(yaml.SafeLoader):
    """Safe loader that refuses duplicate keys (a silent override is a classic config bug)."""


def _build(node: yaml.Node, loader: _Loader, path: PathKey, lines: dict[PathKey, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise ConfigError([ConfigIssue("", key_node.start_mark.line + 1, _dotted(path + (key,)), "duplicate key")])
            child = path + (key,)
            lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, loader, child, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, loader, path + (i,), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, file: str = "<string>") -> tuple[Any, dict[PathKey, int]]:
    """Parse YAML; return the data and a map from key path to line number."""
    lines: dict[PathKey, int] = {}
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        return _build(node, loader, (), lines), lines
    except ConfigError as exc:
        raise ConfigError([ConfigIssue(file, i.line, i.key, i.message) for i in exc.issues]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([ConfigIssue(file, line, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    finally:
        loader.dispose()


def _dotted(path: PathKey) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _line_for(path: PathKey, lines: dict[PathKey, int]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def issues_from_validation(exc: ValidationError, file: str, lines: dict[PathKey, int]) -> list[ConfigIssue]:
    """Turn pydantic's errors into ConfigIssues with the line of the offending key."""
    found = []
    for err in exc.errors():
        # pydantic puts union members and validator names ("function-after[...]") into loc;
        # keep only what can be a key or an index
        loc: PathKey = tuple(p for p in err["loc"] if isinstance(p, int) or _KEY_RE.fullmatch(str(p)))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here; check the spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        ctx = err.get("ctx") or {}
        if "error" in ctx and err["type"] == "value_error":
            msg = str(ctx["error"])
        found.append(ConfigIssue(file, _line_for(loc, lines), _dotted(loc), msg))
    return found


def validate_yaml(model: type[M], text: str, file: str = "<string>", context: dict[str, Any] | None = None) -> M:
    """Parse and validate; raises ConfigError listing every problem with its line."""
    data, lines = load_yaml(text, file)
    if data is None:
        raise ConfigError([ConfigIssue(file, None, "", "file is empty")])
    try:
        obj = model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(exc, file, lines)) from exc
    # Checks across fields (overlaps, duplicates) report their own key paths, so
    # that they too can name a line; models offer them as cross_check().
    cross_check = getattr(obj, "cross_check", None)
    if callable(cross_check):
        problems: list[tuple[PathKey, str]] = cross_check()
        if problems:
            raise ConfigError([ConfigIssue(file, _line_for(path, lines), _dotted(path), msg) for path, msg in problems])
    return obj


def load_model(model: type[M], path: str | Path, context: dict[str, Any] | None = None) -> M:
    """Read ``path`` and validate it against ``model``; errors name the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"not UTF-8 text: {exc}")]) from exc
    return validate_yaml(model, text, str(p), context)
