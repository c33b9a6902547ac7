"""Operator-edited data files read as located YAML: the rule files, agreements, the notification
plan and the evaluation settings.

A file is read no further than a size bound (``read_bounded``), parsed as plain data keeping line
numbers (no YAML tags; dates left as text; nesting and expanded aliases bounded:
``parse_located``) and validated with Pydantic (``validate_located``). Every problem is a
``Problem`` naming the file, the line and the entry, in Chinese, raised together as ``RulesError``,
so an operator can fix the file without reading code.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a data file (rule file, agreement, plan...), located for the operator."""

    file: str
    line: int | None
    subject: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        subject = f" [{self.subject}]" if self.subject else ""
        return f"{where}{subject} {self.message}"


class RulesError(Exception):
    """The files cannot be used; ``problems`` says every reason found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Located:
    """A parsed document (``CommentedMap``, which knows its lines) and the file it came from."""

    file: str
    data: Any

    def line(self, path: Sequence[int | str]) -> int | None:
        """The 1-based line of the deepest node of ``path`` that exists in the YAML."""
        node, line = self.data, None
        for key in path:
            if isinstance(node, CommentedMap) and key in node:
                line = node.lc.key(key)[0] + 1
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                line = node.lc.item(key)[0] + 1
                node = node[key]
            else:
                break
        if line is None and isinstance(node, (CommentedMap, CommentedSeq)):
            line = node.lc.line + 1
        return line

    def subject(self, path: Sequence[int | str], collection: str, label: str) -> str | None:
        """Names the rule or item a path points into, e.g. ``规则 joint.district``."""
        if len(path) >= 2 and path[0] == collection and isinstance(path[1], int):
            entries = self.data.get(collection) if isinstance(self.data, Mapping) else None
            if isinstance(entries, list) and path[1] < len(entries) and isinstance(entries[path[1]], Mapping):
                ident = entries[path[1]].get("id") or entries[path[1]].get("code")
                return f"{label} {ident}" if ident else f"{label} 第{path[1] + 1}条"
        return None


class _DatesAsText(RoundTripConstructor):
    """Leaves dates as text for Pydantic to parse, so a bad date is reported with its line."""


_DatesAsText.add_constructor("tag:yaml.org,2002:timestamp", _DatesAsText.construct_yaml_str)


# Bounds on a rule file, checked before it is built into objects: a file an operator saves must not
# be able to stall or exhaust the process that reads it (an alias bomb, a very deep nesting, a huge file).
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 200_000  # after expanding aliases


def check_bounds(shown: str, text: str, yaml: YAML) -> None:
    """Walks the file's parse events once (no objects built): nesting depth, and the number of
    nodes the file stands for once every alias is expanded. ``RulesError`` at the first excess,
    with its line."""
    from ruamel.yaml.events import (  # the parser's event types
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        NodeEvent,
    )

    sizes: dict[str, int] = {}  # anchor -> nodes it stands for
    stack: list[tuple[str | None, int]] = []  # (anchor, nodes so far) of each open collection
    total = 0

    def add(count: int, line: int) -> None:
        nonlocal total
        total += count
        if stack:
            anchor, nodes = stack[-1]
            stack[-1] = (anchor, nodes + count)
        if total > MAX_NODES:
            raise RulesError([Problem(shown, line, None, f"文件展开后超过 {MAX_NODES:,} 个节点（别名 * 引用层层展开所致？），"
                                                         "拒绝读取 / too many nodes once aliases are expanded")])

    for event in yaml.parse(text):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, AliasEvent):
            add(sizes.get(str(event.anchor), 1), line or 0)
        elif isinstance(event, CollectionStartEvent):
            stack.append((event.anchor, 0))
            if len(stack) > MAX_DEPTH:
                raise RulesError([Problem(shown, line, None,
                                          f"嵌套超过 {MAX_DEPTH} 层，拒绝读取 / nested deeper than {MAX_DEPTH}")])
        elif isinstance(event, CollectionEndEvent):
            anchor, nodes = stack.pop()
            if anchor is not None:
                sizes[str(anchor)] = nodes + 1
            add(1, line or 0)
        elif isinstance(event, NodeEvent):  # a scalar
            if event.anchor is not None:
                sizes[str(event.anchor)] = 1
            add(1, line or 0)


def read_bounded(path: Path) -> bytes:
    """A data file's bytes; ``RulesError`` if it is missing, is not a regular file (a directory, a
    FIFO, a device such as ``/dev/zero`` behind a symlink), cannot be read, or is larger than a rule
    file can reasonably be. Opened without blocking and read no further than the limit, so no file
    can make the reader wait or fill its memory."""
    shown = str(path)

    def refused(message: str) -> RulesError:
        return RulesError([Problem(shown, None, None, message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise refused("文件不存在") from None
    except IsADirectoryError:
        raise refused("这是一个目录，不是规则文件 / a directory, not a file") from None
    except OSError as exc:
        raise refused(f"无法打开：{exc.strerror or exc} / cannot open") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "目录" if stat.S_ISDIR(info.st_mode) else "管道（FIFO）" if stat.S_ISFIFO(info.st_mode) else \
                "设备或其他特殊文件"
            raise refused(f"这是{kind}，不是普通文件，拒绝读取 / not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise refused(f"文件有 {info.st_size:,} 字节，超过上限 {MAX_FILE_BYTES:,}，拒绝读取 / file too large")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refused(f"无法读取：{exc.strerror or exc} / cannot read") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_BYTES:  # it grew since it was opened
        raise refused(f"文件超过上限 {MAX_FILE_BYTES:,} 字节，拒绝读取 / file too large")
    return raw


def parse_located(shown: str, raw: bytes) -> Located:
    """Parses a YAML (or JSON) document keeping line numbers (``shown`` names it in errors);
    ``RulesError`` if it cannot, or if it is deeper or (aliases expanded) bigger than a rule file
    can reasonably be."""
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _DatesAsText
    try:
        text = raw.decode("utf-8")
        check_bounds(shown, text, YAML(typ="rt", pure=True))
        data = yaml.load(text)
    except UnicodeDecodeError as exc:
        raise RulesError([Problem(shown, None, None, f"不是 UTF-8 编码：{exc}")]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise RulesError([Problem(shown, line, None, f"YAML 语法错误：{exc.problem or exc.context}")]) from None
    except ReaderError as exc:  # a character YAML does not allow (a NUL byte, a control character)
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise RulesError([Problem(shown, line, None, f"含有 YAML 不允许的字符 U+{code:04X}（不可见的控制字符），"
                                                     "请删除 / a character YAML does not allow")]) from None
    if not isinstance(data, CommentedMap):
        raise RulesError([Problem(shown, 1, None, "文件顶层必须是一个映射（键: 值）")])
    return Located(shown, data)


def read_located(path: Path) -> tuple[Located, bytes]:
    """Reads and parses a data file (``read_bounded``, then ``parse_located``)."""
    raw = read_bounded(path)
    return parse_located(str(path), raw), raw


def validate_located(source: Located, model: type[_M], collection: str, label: str,
                     more: Mapping[str, str] | None = None) -> _M:
    """Validates a located document; each error names the file, the line and the entry.

    ``more`` names further collections of the document (``{"retired": "停用事项"}``) whose
    entries are named the same way.
    """
    try:
        return model.model_validate(_plain(source.data))
    except ValidationError as exc:
        errors = exc.errors()
        paths = [tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p)) for error in errors]
        # One message per place: the branches of a union (``requires``: a list, or previous_stage)
        # fail together, and a list whose every entry failed is also reported as too short.
        messages: dict[tuple[int | str, ...], list[str]] = {}
        for error, path in zip(errors, paths, strict=True):
            if error["type"] == "too_short" and any(len(other) > len(path) and other[:len(path)] == path
                                                    for other in paths):
                continue
            message = _message_zh(error)
            if message not in messages.setdefault(path, []):
                messages[path].append(message)
        problems = []
        for path, texts in messages.items():
            subject = source.subject(path, collection, label)
            for other, other_label in (more or {}).items():
                subject = subject or source.subject(path, other, other_label)
            problems.append(Problem(source.file, source.line(path), subject,
                                    f"{_display_path(path)}: {'；或者 '.join(texts)}"))
        raise RulesError(problems) from None


def _display_path(path: Sequence[int | str]) -> str:
    """``rules.1.then.mode`` as an operator counts: ``rules[2].then.mode`` (entries from 1)."""
    shown = ""
    for part in path:
        shown += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if shown else str(part))
    return shown


def _shown(value: Any, limit: int = 80) -> str:
    """A value as the operator reads it in a message, cut short: a long one is not echoed whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…（共 {len(str(value)):,} 个字符）"


def _message_zh(error: Any) -> str:
    kind, msg = error["type"], error["msg"]
    given = error.get("input")
    ctx = error.get("ctx", {})
    if kind == "string_too_long":
        return f"长度 {len(given):,} 个字符，超过上限 {ctx.get('max_length')} / too long（实际值 {_shown(given)}）"
    if kind == "too_long":
        count = f"有 {ctx['actual_length']} 项，" if isinstance(ctx.get("actual_length"), int) else ""
        return f"{count}超过上限 {ctx.get('max_length')} 项 / too many entries"
    if kind == "string_pattern_mismatch":
        return f"格式不符（应匹配 {ctx.get('pattern')}），实际值 {_shown(given)}"
    if kind == "missing":
        return "缺少必填字段"
    if kind == "extra_forbidden":
        return "不认识的字段（拼写错误？）"
    if kind == "enum":
        expected = error.get("ctx", {}).get("expected", "")
        return f"取值 {given!r} 不在允许范围内，应为 {expected}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"取值 {given!r} 不在允许范围内，应为 {expected}"
    if kind in ("tuple_type", "list_type"):
        return f"应为列表（每项一行“- 值”，或写成 [值1, 值2]），实际是 {given!r}"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", msg))
    return f"{msg}（实际值 {_shown(given)}）"


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
