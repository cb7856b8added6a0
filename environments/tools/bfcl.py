"""Function calling in the Berkeley Function Calling Leaderboard (BFCL) format, checked by AST match.

``make("tools/bfcl-format-v0", path="BFCL_v3_simple.json")``; records (JSON lines, or a JSON list)::

    {"id": "simple_0",
     "question": [[{"role": "user", "content": "Area of a triangle with base 10 and height 5?"}]],
     "function": [{"name": "calculate_triangle_area", "description": "...",
                   "parameters": {"type": "dict", "required": ["base", "height"],
                                  "properties": {"base": {"type": "integer"}, "height": {"type": "integer"},
                                                 "unit": {"type": "string"}}}}],
     "ground_truth": [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]}

``question`` may also be a plain string or one list of messages (older BFCL releases); only
single-turn records are supported, checked with the Python rules (BFCL's Java/JavaScript categories,
which compare string-typed values after a language-specific conversion, and its executable and
multi-turn categories are not covered). ``ground_truth`` may sit in the record or, as BFCL ships it, in a
separate ``possible_answer`` file given as ``answer_path=`` (records matched by ``id``);
``path="bfcl-eval:CATEGORY"`` takes both files of a category from the installed ``bfcl-eval``
package (``pip install --no-deps bfcl-eval``: only its data files are read). Every
argument maps to the list of acceptable values; ``""`` in the list means the argument may be left
out. One ground-truth call with one function is BFCL's *simple*, with several functions *multiple*
(choose the function); several calls are *parallel* and match in any order. An empty ground truth
means no call should be made (BFCL's *irrelevance*).

**Acceptance rules** (BFCL's AST checker for Python, reimplemented):

* the call count equals the ground truth's; calls pair with ground-truth calls in any order;
* the function name matches, or matches with ``.`` written as ``_`` (names OpenAI-style APIs cannot carry);
* every ``required`` parameter is present; every given argument is in the schema *and* in the
  ground truth (else "unexpected argument"); a ground-truth argument may be absent only if ``""``
  is among its values;
* types follow the schema (``integer``, ``float``/``number``, ``string``, ``boolean``, ``array``,
  ``tuple``, ``dict``/``object``, ``any``): exact Python types, so ``true`` is not an integer, but an
  integer is accepted where a float is expected; array items are type-checked one level deep;
* strings compare after BFCL's normalisation: lower case, without spaces and ``, . / - _ * ^``,
  single quotes read as double quotes; so do the strings inside lists and dict values;
* a dict matches one of its acceptable dicts key by key (no unknown keys, absent keys only if
  optional); a list of dicts matches position by position; other values must be among the listed
  ones by ``==`` (so ``5`` equals ``5.0``);
* where the ground truth gives a value of another type than the schema's (a string standing for a
  variable name), a value of that type is compared as is.

Replies are read with the tool-call parser of :mod:`.core` (``<tool_call>`` blocks or JSON) and,
when it finds nothing, in BFCL's own Python syntax: ``[f(a=1), g(b="x")]``. ``feedback`` names the
function and argument that are wrong, never the acceptable values; ``oracle_feedback`` adds them to it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.environments.records import parse_json_records, read_text
from agentloop.errors import ConfigError
from agentloop.rollout import RENDER_TOOLS_KEY
from agentloop.types import Message, ToolCall, system, user

from .core import ParsedCalls, parse_tool_calls, tools_system_text

PY_TYPES: dict[str, type | None] = {"string": str, "integer": int, "float": float, "number": float,
                                    "boolean": bool, "array": list, "tuple": list, "dict": dict, "object": dict,
                                    "any": None}
JSON_SCHEMA_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}
_STRIP = re.compile(r"[ ,./\-_*^]")


class BFCLRecord(BaseModel):
    """One BFCL test entry with its ground truth."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    messages: tuple[dict[str, str], ...] = Field(description="The (single-turn) conversation.")
    functions: tuple[dict[str, JsonValue], ...] = Field(description="BFCL function documents.")
    ground_truth: tuple[dict[str, dict[str, list[JsonValue]]], ...] = Field(
        description="One {name: {argument: [acceptable values]}} per expected call.")


# -- loading -------------------------------------------------------------------------------------
def _read_json_records(p: Path) -> list[dict[str, Any]]:
    if not p.is_file():
        raise ConfigError(f"tools/bfcl-format-v0: file {str(p)!r} does not exist; pass path= a BFCL JSON(L) file.")
    return parse_json_records(read_text(p), p)


def _messages(question: Any, where: str) -> list[dict[str, str]]:
    if isinstance(question, str):
        return [{"role": "user", "content": question}]
    if isinstance(question, list) and question and all(isinstance(t, list) for t in question):
        if len(question) > 1:
            raise ConfigError(f"{where}: multi-turn BFCL records ({len(question)} turns) are not supported; "
                              "use the single-turn categories (simple, multiple, parallel, irrelevance).")
        question = question[0]
    if isinstance(question, list) and question and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in question):
        return [{"role": str(m.get("role", "user")), "content": m["content"]} for m in question]
    raise ConfigError(f"{where}: 'question' must be a string, a list of messages, or a list of turns.")


def load_bfcl(path: str | Path, answer_path: str | Path | None = None) -> list[BFCLRecord]:
    """Read BFCL records (and their ground truth, inline or from ``answer_path``)."""
    p = Path(path)
    rows = _read_json_records(p)
    answers: dict[str, Any] = {}
    if answer_path is not None:
        answers = {str(r.get("id")): r.get("ground_truth") for r in _read_json_records(Path(answer_path))}
    out = []
    for n, row in enumerate(rows, start=1):
        where = f"{p} record {n}"
        if not isinstance(row, dict) or "question" not in row or "function" not in row:
            raise ConfigError(f"{where}: a BFCL record needs 'question' and 'function'.")
        rid = str(row.get("id", n))
        gt = row.get("ground_truth", answers.get(rid))
        if gt is None:
            raise ConfigError(f"{where}: no ground truth for id {rid!r}; put 'ground_truth' in the record or "
                              "pass answer_path= the BFCL possible_answer file.")
        functions = row["function"] if isinstance(row["function"], list) else [row["function"]]
        try:
            rec = BFCLRecord(id=rid, messages=tuple(_messages(row["question"], where)), functions=tuple(functions),
                             ground_truth=tuple(gt if isinstance(gt, list) else [gt]))
        except ValueError as e:
            raise ConfigError(f"{where}: invalid record ({e}); see agentloop.environments.tools.bfcl.") from e
        for call in rec.ground_truth:
            if len(call) != 1:
                raise ConfigError(f"{where}: each ground-truth call must be {{name: {{argument: [values]}}}}.")
            name = next(iter(call))
            if _function(rec, name) is None:
                raise ConfigError(f"{where}: ground truth calls {name!r}, which is not in 'function'.")
        out.append(rec)
    if not out:
        raise ConfigError(f"tools/bfcl-format-v0: {p} holds no records.")
    return out


BFCL_EVAL_SCHEME = "bfcl-eval:"
BFCL_RELEASE = "v4"


def bfcl_eval_files(category: str) -> tuple[Path, Path]:
    """The question and possible-answer files of a BFCL category shipped by the ``bfcl-eval`` package.

    ``category`` is BFCL's file stem after ``BFCL_v4_``: ``simple_python`` (``simple`` is read as it,
    BFCL's v3 name), ``multiple``, ``parallel``, ``parallel_multiple``, ``live_simple``, ... The package
    is only located, never imported: its data files are all that is read, so ``pip install --no-deps
    bfcl-eval`` is enough (its own dependencies pin versions this project does not need).
    """
    import importlib.util

    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("tools/bfcl-format-v0: path='bfcl-eval:...' needs the bfcl-eval package's data files; "
                          "install them with `pip install --no-deps bfcl-eval` or pass path= a BFCL file.")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    names = [category, *(["simple_python"] if category == "simple" else [])]
    for name in names:
        question = data / f"BFCL_{BFCL_RELEASE}_{name}.json"
        if question.is_file():
            return question, data / "possible_answer" / question.name
    known = sorted(p.stem.removeprefix(f"BFCL_{BFCL_RELEASE}_") for p in data.glob(f"BFCL_{BFCL_RELEASE}_*.json"))
    raise ConfigError(f"tools/bfcl-format-v0: bfcl-eval has no category {category!r} in {data}; "
                      f"categories: {', '.join(known) or 'none'}.")


def _function(rec: BFCLRecord, name: str) -> dict[str, Any] | None:
    return next((dict(f) for f in rec.functions if f.get("name") == name), None)


def openai_schema(fn: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function document as an OpenAI tool schema (``dict``->``object``, ``float``->``number``...)."""
    def conv(node: Any) -> Any:
        if isinstance(node, list):
            return [conv(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: conv(v) for k, v in node.items() if k != "type"}
        if "type" in node:
            t = JSON_SCHEMA_TYPES.get(node["type"], node["type"]) if isinstance(node["type"], str) else node["type"]
            if t is not None:
                out["type"] = t
        if "properties" in node:
            out["properties"] = {k: conv(v) for k, v in node["properties"].items()}
        return out
    return {"type": "function", "function": {"name": fn["name"], "description": fn.get("description", ""),
                                             "parameters": conv(fn.get("parameters", {"type": "dict", "properties": {}}))}}


# -- the checker (BFCL's rules; see the module docstring) ----------------------------------------
def standardize(text: str) -> str:
    """BFCL's string normalisation."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _std(value: Any) -> Any:
    return standardize(value) if isinstance(value, str) else value


def _is_type(value: Any, py: type | None) -> bool:
    return py is None or type(value) is py


def _dict_ok(value: dict[str, Any], options: Sequence[Any]) -> bool:
    for option in options:
        if not isinstance(option, dict):
            continue
        if all(k in option and _std(v) in [_std(o) for o in option[k]] for k, v in value.items()) and \
                all(k in value or "" in vals for k, vals in option.items()):
            return True
    return False


def argument_problem(name: str, arg: str, value: Any, prop: dict[str, Any], acceptable: list[Any]) -> str | None:
    """Why one argument is not acceptable (names the argument, never the acceptable values), or None."""
    kind = prop.get("type", "any")
    py = PY_TYPES.get(kind) if isinstance(kind, str) else None
    if kind == "float" or kind == "number":
        if type(value) is int:
            value = float(value)  # BFCL accepts an integer where a float is expected
    given = [a for a in acceptable if a != ""]
    variable_type = type(given[0]) if given else None
    is_variable = variable_type is not None and py is not None and variable_type is not py \
        and type(value) is variable_type
    if not is_variable and not _is_type(value, py):
        return f"{name}: argument '{arg}' should be of type {kind}, got {type(value).__name__}."
    if not is_variable and py is list:
        inner = PY_TYPES.get(str((prop.get("items") or {}).get("type", "any")))
        if inner is not None and not all(type(v) is inner for v in value):
            return f"{name}: the items of argument '{arg}' should be of type {prop['items']['type']}."
        if inner is dict:
            ok = any(isinstance(opt, list) and len(opt) == len(value) and all(_dict_ok(v, [o]) for v, o in zip(value, opt))
                     for opt in given)
            return None if ok else f"{name}: argument '{arg}' has an invalid value."
        std = [_std(v) for v in value]
        ok = any(isinstance(opt, list) and [_std(o) for o in opt] == std for opt in given)
        return None if ok else f"{name}: argument '{arg}' has an invalid value."
    if not is_variable and py is dict:
        return None if _dict_ok(value, given) else f"{name}: argument '{arg}' has an invalid value."
    if not is_variable and py is str:
        return None if standardize(value) in [standardize(a) for a in given if isinstance(a, str)] \
            else f"{name}: argument '{arg}' has an invalid value."
    return None if value in given else f"{name}: argument '{arg}' has an invalid value."


def name_matches(expected: str, given: str) -> bool:
    """Exact, or with the dots of a dotted name written as underscores."""
    return given == expected or given == expected.replace(".", "_")


def call_problems(fn: dict[str, Any], call: ToolCall, expected: dict[str, list[Any]]) -> list[str]:
    """Why ``call`` is not the expected call to ``fn`` (empty when it is)."""
    name = fn["name"]
    if not name_matches(name, call.name):
        return [f"the call to {call.name} is not the call this request needs."]
    params = fn.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    problems = [f"{name}: missing required argument '{p}'." for p in params.get("required", []) if p not in call.arguments]
    for arg, value in call.arguments.items():
        if arg not in props or arg not in expected:
            problems.append(f"{name}: argument '{arg}' is not expected.")
            continue
        problem = argument_problem(name, arg, value, props[arg], list(expected[arg]))
        if problem:
            problems.append(problem)
    problems += [f"{name}: argument '{arg}' is missing (it is not optional here)."
                 for arg, vals in expected.items() if arg not in call.arguments and "" not in vals
                 and arg not in params.get("required", [])]
    return problems


def _match(ok: list[list[bool]]) -> dict[int, int]:
    """A maximum pairing of ground-truth calls (rows) with model calls (columns), by augmenting paths."""
    owner: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j, good in enumerate(ok[i]):
            if good and j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i in range(len(ok)):
        augment(i, set())
    return {i: j for j, i in owner.items()}


def judge_calls(rec: BFCLRecord, calls: Sequence[ToolCall]) -> tuple[float, bool, list[str]]:
    """(reward, success, feedback lines): reward = matched calls / max(#expected, #made)."""
    gold = [(next(iter(g)), next(iter(g.values()))) for g in rec.ground_truth]
    if not gold:
        ok = not calls
        return float(ok), ok, ([] if ok else ["No function call was needed for this request."])
    fns = [_function(rec, name) or {"name": name} for name, _ in gold]
    problems = [[call_problems(fn, c, args) for c in calls] for fn, (_, args) in zip(fns, gold)]
    pairs = _match([[not p for p in row] for row in problems])
    lines = [] if len(calls) == len(gold) else [f"Expected {len(gold)} function call(s), got {len(calls)}."]
    used = set(pairs.values())
    for i, (name, _) in enumerate(gold):
        if i in pairs:
            continue
        # explain with the closest unpaired call to the same function, if any
        near = [j for j in range(len(calls)) if j not in used and name_matches(name, calls[j].name)]
        if near:
            j = min(near, key=lambda j: len(problems[i][j]))
            used.add(j)
            lines += problems[i][j]
        elif len(calls) >= len(gold):
            lines.append("A needed call is missing: a call to another function or with other arguments.")
    lines += [f"The call to {calls[j].name} is not needed." for j in range(len(calls)) if j not in used]
    success = len(pairs) == len(gold) == len(calls)
    return len(pairs) / max(len(gold), len(calls)), success, lines


_ARG_LINE = re.compile(r"^(?P<fn>[\w.]+): (?:argument '(?P<arg>[^']+)' (?P<what>has an invalid value|should be of type"
                       r"|is not expected|is missing)|the items of argument '(?P<items>[^']+)'|missing required argument "
                       r"'(?P<req>[^']+)')")
_COUNT_LINE = re.compile(r"^Expected (\d+) function call\(s\), got \d+\.$")


def feedback_followed(previous: Mapping[str, Any], current: Mapping[str, Any]) -> bool | None:
    """Did the next reply's calls (``current["calls"]``) do what :func:`judge_calls`'s feedback on the
    previous reply asked, line by line? An argument with an invalid value or type: a call to that function
    passes another value for it; a missing argument: a call to that function passes it; an argument not
    expected: no call to that function passes it; "Expected N function call(s)": N calls. Every such line
    must be followed; None when the feedback has none (a parse error, a wrong function, a right reply).

    >>> feedback_followed({"feedback": "get_weather: argument 'city' has an invalid value.",
    ...                    "calls": [{"name": "get_weather", "arguments": {"city": "Pariss"}}]},
    ...                   {"calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})
    True
    """
    before = [c for c in previous.get("calls") or [] if isinstance(c, dict)]
    after = [c for c in current.get("calls") or [] if isinstance(c, dict)]
    verdicts = []
    for line in str(previous.get("feedback") or "").splitlines():
        count = _COUNT_LINE.match(line)
        if count:
            verdicts.append(len(after) == int(count.group(1)))
            continue
        m = _ARG_LINE.match(line)
        if not m:
            continue
        fn, arg = m.group("fn"), m.group("arg") or m.group("items") or m.group("req")
        old = [c.get("arguments", {}) for c in before if name_matches(fn, str(c.get("name")))]
        new = [c.get("arguments", {}) for c in after if name_matches(fn, str(c.get("name")))]
        if m.group("req") or m.group("what") == "is missing":
            verdicts.append(any(arg in a for a in new))
        elif m.group("what") == "is not expected":
            verdicts.append(bool(new) and all(arg not in a for a in new))
        else:  # an invalid value or type: another value now
            verdicts.append(any(arg in a and all(a[arg] != o.get(arg) for o in old) for a in new))
    return all(verdicts) if verdicts else None


# -- BFCL's Python call syntax ---------------------------------------------------------------------
def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def parse_python_calls(text: str) -> ParsedCalls:
    """``[f(a=1), g(b="x")]`` (or one bare call) as tool calls; keyword arguments with literal values."""
    body = text.strip()
    fence = re.search(r"```[a-zA-Z]*\s*\n(.*?)```", body, re.S)
    if fence:
        body = fence.group(1).strip()
    nodes = None
    # the whole reply, else its last line that parses as calls (prose before the answer)
    for candidate in (body, *reversed([line.strip() for line in body.splitlines() if line.strip()])):
        try:
            tree = ast.parse(candidate, mode="eval")
        except SyntaxError:
            continue
        found = tree.body.elts if isinstance(tree.body, (ast.List, ast.Tuple)) else [tree.body]
        if found and all(isinstance(n, ast.Call) for n in found):
            nodes = found
            break
    if nodes is None:
        return ParsedCalls()
    calls, errors = [], []
    for i, node in enumerate(nodes):
        assert isinstance(node, ast.Call)
        name = _dotted(node.func)
        if name is None:
            errors.append(f"call {i + 1}: the function must be a (dotted) name.")
            continue
        if node.args:
            errors.append(f"call {i + 1} to {name!r}: pass every argument by keyword (name=value).")
            continue
        try:
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
            args = json.loads(json.dumps(args))  # tuples -> lists, as BFCL's JSON ground truth has them
            calls.append(ToolCall(name=name, arguments=args))
        except (ValueError, TypeError, SyntaxError):
            errors.append(f"call {i + 1} to {name!r}: argument values must be literals (numbers, strings, lists...).")
    return ParsedCalls(calls=tuple(calls), errors=tuple(errors))


def parse_reply(text: str) -> ParsedCalls:
    """Tool calls in a reply: the text protocol of :mod:`.core`, else BFCL's ``{name: {args}}`` JSON or
    Python call syntax."""
    parsed = parse_tool_calls(text)
    if parsed.any:
        return parsed
    try:
        obj = json.loads(text.strip())
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, list) and obj and all(isinstance(o, dict) and len(o) == 1 and isinstance(next(iter(o.values())), dict)
                                             for o in obj):
        return ParsedCalls(calls=tuple(ToolCall(name=next(iter(o)), arguments=next(iter(o.values()))) for o in obj))
    return parse_python_calls(text)


def first_acceptable(option: Any) -> Any:
    """A concrete value from one acceptable option: a dict option maps each key to its acceptable values, so it
    becomes the dict of each key's first value (keys whose first value is ``""`` left out); lists of them too."""
    if isinstance(option, dict):
        return {k: first_acceptable(v[0]) for k, v in option.items()
                if isinstance(v, list) and v and v[0] != ""}
    if isinstance(option, list) and option and all(isinstance(o, dict) for o in option):
        return [first_acceptable(o) for o in option]
    return option


# -- the environment -----------------------------------------------------------------------------
class BFCLFormatEnv(TaskEnv):
    """``make("tools/bfcl-format-v0", path=..., answer_path=None, tool_prompt="text")``.

    ``path="bfcl-eval:simple"`` (or ``multiple``, ``parallel``...) reads that category's question and
    possible-answer files from the installed ``bfcl-eval`` package (:func:`bfcl_eval_files`).
    """

    def __init__(self, path: str, answer_path: str | None = None, tool_prompt: Literal["text", "native"] = "text",
                 limit: int | None = None):
        super().__init__()
        if tool_prompt not in ("text", "native"):
            raise ConfigError(f"tools/bfcl-format-v0: tool_prompt must be 'text' or 'native', got {tool_prompt!r}.")
        if limit is not None and limit < 1:
            raise ConfigError(f"tools/bfcl-format-v0: limit must be >= 1 (or None for every record), got {limit}.")
        self.tool_prompt = tool_prompt
        if path.startswith(BFCL_EVAL_SCHEME):
            if answer_path is not None:
                raise ConfigError("tools/bfcl-format-v0: path='bfcl-eval:...' brings its own possible-answer file; "
                                  "leave answer_path unset.")
            question, answers = bfcl_eval_files(path.removeprefix(BFCL_EVAL_SCHEME))
            path, answer_path = str(question), str(answers)
        self.records = load_bfcl(path, answer_path)[:limit]

    def num_tasks(self) -> int:
        return len(self.records)

    def get_task(self, index: int) -> Task:
        rec = self.records[index]
        schemas = [openai_schema(dict(f)) for f in rec.functions]
        preamble = " ".join(m["content"] for m in rec.messages if m["role"] == "system")
        head: list[Message] = []
        if self.tool_prompt == "text":
            head = [system(tools_system_text(schemas, preamble))]
        elif preamble:
            head = [system(preamble)]
        turns = [user(m["content"]) if m["role"] == "user" else Message(role=m["role"], content=m["content"])  # type: ignore[arg-type]
                 for m in rec.messages if m["role"] != "system"]
        return Task(id=rec.id, messages=(*head, *turns), answer=[dict(g) for g in rec.ground_truth],  # type: ignore[misc]
                    metadata={"index": index})

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        schemas = [openai_schema(dict(f)) for f in self.records[int(self.task.metadata["index"])].functions]  # type: ignore[arg-type]
        info = {**info, "tools": schemas}
        if self.tool_prompt == "native":
            info[RENDER_TOOLS_KEY] = schemas
        return obs, info

    def gold_reply(self, task: Task) -> str:
        """A reply making the ground truth's first acceptable calls (for ``envs check-gold`` and tests)."""
        rec = self.records[int(task.metadata["index"])]  # type: ignore[arg-type]
        calls = [{"name": name, "arguments": {k: first_acceptable(v[0]) for k, v in args.items() if v and v[0] != ""}}
                 for g in rec.ground_truth for name, args in g.items()]
        return "\n".join(f"<tool_call>\n{json.dumps(c)}\n</tool_call>" for c in calls) or "No function call is needed."

    @staticmethod
    def feedback_uptake(previous: Mapping[str, Any], action: str, current: Mapping[str, Any]) -> bool | None:
        """The lines of the call feedback followed (:func:`feedback_followed`)."""
        return feedback_followed(previous, current)

    def verify(self, task: Task, action: str) -> Verdict:
        rec = self.records[int(task.metadata["index"])]  # type: ignore[arg-type]
        parsed = parse_reply(action)
        reward, success, lines = judge_calls(rec, parsed.calls)
        if parsed.errors:
            reward, success, lines = 0.0, False, [*parsed.errors, *lines]
        feedback = "All calls are correct." if success else "\n".join(lines)
        # the oracle adds the values to what the env feedback says is wrong (as RISE's oracle hint does)
        oracle = ("Acceptable calls (each argument: one of the listed values; \"\" = may be omitted):\n"
                  + "\n".join(json.dumps(g) for g in rec.ground_truth)) if rec.ground_truth \
            else "Expected: no function call."
        oracle = oracle if success else f"{feedback}\n{oracle}"
        return Verdict(reward=reward, success=success, feedback=feedback,
                       oracle_feedback=oracle, parse_error="; ".join(parsed.errors) or None,
                       info={"calls": [c.model_dump(mode="json") for c in parsed.calls]})


__all__ = ["BFCLFormatEnv", "BFCLRecord", "argument_problem", "bfcl_eval_files", "call_problems", "feedback_followed",
           "first_acceptable", "judge_calls", "load_bfcl", "name_matches", "openai_schema", "parse_python_calls",
           "parse_reply", "standardize"]
