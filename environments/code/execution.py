"""Code extraction and test execution for code environments (importable helpers for the algorithms).

* :func:`extract_code`: the program in a model reply: the first fenced block tagged ``python``/``py``
  (or untagged), a block left open by a stop string, or the whole reply when it parses as Python.
* :func:`build_program`: the test harness, built so that the program cannot forge its verdict. Each
  test (an ``assert`` statement) is split on the host (:func:`plan_tests`) into *holes*, the smallest
  sub-expressions that need a name the program (or the setup code) defines, e.g. ``remove_Occ("hello",
  "l")``, and the rest, e.g. ``_h0 == "heo"``. Only the holes go into the sandboxed program: it loads
  the solution, then the setup code (MBPP's ``test_setup_code`` builds fixtures from the solution's
  classes), evaluates each hole and reports its value as tagged plain data (ints, floats, strings,
  bytes, lists, tuples, sets, dicts, Counter, OrderedDict, deque, range, Decimal, Fraction; never an
  object of the program's). The host decodes the values (:func:`decode_value`) and evaluates the rest
  of each test itself, with the real builtins and standard-library modules; it only compares the
  values and passes them to a few cheap helpers (:data:`HOST_CALLS`: ``sorted``, ``set``,
  ``math.isclose``, ...), so a program cannot make the host compute for long or allocate much. So the expected values
  never reach the program, and exiting early (``sys.exit``, ``os._exit``, ``atexit``, ``__del__``),
  replacing builtins (``AssertionError``, ``exec``, ``compile``, ``eval``), patching ``os.write`` or
  ``json``, printing or reconstructing the per-run marker (``linecache``, frame introspection),
  patching the harness's functions, closing or redirecting file descriptors, or returning objects whose
  ``__eq__`` is always true gain nothing: a missing or doubled report fails the test, and a forged
  report is only a value the program's function could have returned. What this does not cover: a
  program that returns the right answers for tests it can read (the holes' arguments are visible to
  it, and MBPP's prompt shows the first test) -- hard-coding, not forging; tests that are not
  ``assert`` statements, which are judged by running them in the sandbox (a hostile program can forge
  those); comparisons a test writes inside a comprehension, lambda or subscript together with the
  program's names (``assert all(f(x) == y for x, y in cases)``): that whole part is a hole, evaluated
  in the sandbox; and names the program defines shadowing what a test calls (``def sorted``): the test
  then runs the program's version, as it would in a plain run. MBPP's 2,922 tests are all
  ``assert <call> == <value>`` and fully covered. tests/sandbox/test_verifier_integrity.py
  tries every trick above against a wrong solution.
* :func:`run_tests` / :func:`run_tests_many`: build, run in the sandbox, judge (:func:`parse_report`)
  into a :class:`TestReport` with the fraction of tests passed and LeTI-style feedback: the failing
  assert (with the value the call returned when the test is ``assert f(...) == expected``), or the
  traceback, or "timeout", trimmed to :data:`FEEDBACK_CHARS`. ``host=`` binds names to values the
  host holds (expected outputs computed elsewhere, e.g. EvalPlus's): a test's use of such a name is
  never a hole, even when the program defines the same name, and the values never reach the program.
* :func:`run_expressions`: a trusted program's values for some expressions (a reference solution's
  outputs on test inputs), in a sandbox run of its own, returned as plain data for ``host=``.
"""

from __future__ import annotations

import ast
import binascii
import builtins
import collections
import copy
import decimal
import fractions
import functools
import importlib
import json
import marshal
import re
import secrets
import sys
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from agentloop.sandbox import ExecResult, Sandbox

FEEDBACK_CHARS = 1200
FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The Python program in a reply, or None when there is none."""
    if not text or not text.strip():
        return None
    blocks = [(lang.lower(), body) for lang, body in FENCE_RE.findall(text)]
    for wanted in (("python", "py", "python3"), ("",)):
        for lang, body in blocks:
            if lang in wanted and body.strip():
                return body.strip("\n")
    if blocks:
        return None  # only blocks in other languages
    try:
        tree = ast.parse(text)
    except (SyntaxError, MemoryError, RecursionError, ValueError):  # deep nesting / NUL bytes: not code we run
        return None
    # Prose that happens to parse (a bare name or number) is not code.
    if any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Assign)) for n in tree.body):
        return text.strip("\n")
    return None


class TestOutcome(BaseModel):
    """One test's result inside the harness."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    passed: bool
    message: str = ""


class TestReport(BaseModel):
    """What running a solution against its tests gave."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: bool = Field(description="Every test passed.")
    tests_passed: int
    tests_total: int
    outcomes: tuple[TestOutcome, ...] = ()
    feedback: str = Field(description="LeTI-style feedback: failing assert, traceback or 'timeout' (trimmed).")
    stage: str = Field(description="ok | no_code | syntax | load | test | timeout | crash | sandbox")
    result: ExecResult | None = None

    @property
    def fraction(self) -> float:
        return self.tests_passed / self.tests_total if self.tests_total else 0.0


# Names a test may use that the host resolves itself (never the program's objects): builtins that cannot reach
# the file system or run code, and standard-library modules tests use (MBPP: math.isclose, sys.getsizeof).
HOST_MODULES = ("math", "cmath", "re", "string", "collections", "itertools", "functools", "operator", "heapq",
                "bisect", "fractions", "decimal", "statistics", "sys", "array", "datetime", "copy")
UNSAFE_BUILTINS = frozenset({"eval", "exec", "compile", "open", "__import__", "input", "breakpoint", "getattr",
                             "setattr", "delattr", "globals", "locals", "vars", "help", "exit", "quit", "memoryview",
                             "__build_class__", "__loader__", "__spec__"})
HOST_BUILTINS = {k: v for k, v in vars(builtins).items() if k not in UNSAFE_BUILTINS and not k.startswith("__")}
# The only calls the host makes on values the program reported: each costs at most a pass over its arguments
# (whose size the sandbox's output cap bounds), so a program cannot make the host allocate or loop without end
# (``list(range(f()))``, ``math.factorial(f())``); any other call containing a hole is itself a hole.
HOST_CALLS = frozenset({
    "set", "frozenset", "sorted", "list", "tuple", "dict", "len", "abs", "round", "int", "float", "bool", "str",
    "type", "isinstance", "sum", "min", "max", "all", "any", "repr", "reversed", "math.isclose", "math.fabs",
    "math.floor", "math.ceil", "math.trunc", "collections.Counter", "collections.OrderedDict",
})
MAX_RANGE = 1_000_000  # a reported range longer than this is not decoded (the host would iterate it)
MAX_DEPTH = 100

# The harness's code; the program defines _M (marker), _SOLUTION, _SETUP, _HOLES and _DEPTH before running it.
HARNESS = r"""
import io as _io, json as _json, os as _os, sys as _sys, traceback as _tb, linecache as _lc
import collections as _col, decimal as _dec, fractions as _fr
def _emit(obj):
    line = _M + " " + _json.dumps(obj) + "\n"
    try:
        _os.write(1, line.encode("utf-8", "replace"))
    except OSError:
        pass
def _enc(v, d):
    if d > _DEPTH:
        raise ValueError("nested too deeply")
    if v is None or v is True or v is False:
        return v
    t, e = type(v), lambda xs: [_enc(x, d + 1) for x in xs]
    if isinstance(v, int) and not isinstance(v, bool):
        return ["i", hex(int.__index__(v))]
    if isinstance(v, float):
        return ["f", float.hex(float(v))]
    if isinstance(v, complex):
        return ["c", float.hex(v.real), float.hex(v.imag)]
    if isinstance(v, str):
        return ["s", str.__str__(v)]
    if isinstance(v, (bytes, bytearray)):
        return ["b" if isinstance(v, bytes) else "B", bytes(v).hex()]
    if isinstance(v, _col.Counter):
        return ["C", [[_enc(k, d + 1), _enc(x, d + 1)] for k, x in dict.items(v)]]
    if isinstance(v, _col.OrderedDict):
        return ["O", [[_enc(k, d + 1), _enc(x, d + 1)] for k, x in dict.items(v)]]
    if isinstance(v, dict):
        return ["d", [[_enc(k, d + 1), _enc(x, d + 1)] for k, x in dict.items(v)]]
    if isinstance(v, list):
        return ["l", e(list.__iter__(v))]
    if isinstance(v, tuple):
        return ["t", e(tuple.__iter__(v))]
    if isinstance(v, frozenset):
        return ["F", e(frozenset.__iter__(v))]
    if isinstance(v, set):
        return ["S", e(set.__iter__(v))]
    if isinstance(v, _col.deque):
        return ["q", e(v), v.maxlen]
    if isinstance(v, range):
        return ["r", v.start, v.stop, v.step]
    if isinstance(v, _dec.Decimal):
        return ["D", str(v)]
    if isinstance(v, _fr.Fraction):
        return ["Q", hex(v.numerator), hex(v.denominator)]
    raise TypeError("a value of type " + t.__name__ + " cannot be checked outside the program")
def _trace(e, name):
    if isinstance(e, SyntaxError):
        return "".join(_tb.format_exception_only(type(e), e))
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != name:
        tb = tb.tb_next
    return "".join(_tb.format_exception(type(e), e, tb if tb is not None else e.__traceback__))
def _load(name, src, g, mode="exec"):
    _lc.cache[name] = (len(src), None, src.splitlines(True), name)
    code = compile(src, name, mode)
    return eval(code, g) if mode == "eval" else exec(code, g)
def _main():
    g = {"__name__": "__main__"}
    _sys.stdout = _io.StringIO()  # the solution's prints are not part of the protocol
    for kind, name, src in (("load", "<solution>", _SOLUTION), ("setup", "<setup>", _SETUP)):
        if not src:
            continue
        try:
            _load(name, src, g)
        except SystemExit:
            _emit([kind, "The program called exit() before the tests ran."]); return
        except BaseException as e:
            _emit([kind, _trace(e, name)]); return
    for h, (test, mode, src) in enumerate(_HOLES):
        name = "<test %d>" % test
        try:
            v = _load(name, src, g, mode)
            if mode == "exec":
                _emit(["h", h, "ok"]); continue
            try:
                out = _enc(v, 0)
            except BaseException as e:
                _emit(["h", h, "x", "TypeError: " + src + ": " + str(e)[:300]]); continue
            _emit(["h", h, "v", out])
        except SystemExit:
            _emit(["h", h, "x", "The program called exit() during the test: " + src])
        except BaseException as e:
            _emit(["h", h, "x", _trace(e, name)])
_main()
"""


# The program: the data, then the harness's code compiled once here, marshalled and compressed (compiling it in
# every run, or even tokenizing it as a long literal, would cost more than the rest of a typical MBPP run: in a
# freshly forked child every page the compiler touches is a page fault); an interpreter of another version
# compiles the (compressed) source instead.
PROGRAM = """import sys as _s, marshal as _m, zlib as _z, binascii as _b
_M = {marker!r}
_SOLUTION = {solution!r}
_SETUP = {setup!r}
_HOLES = {holes!r}
_DEPTH = {depth!r}
exec(_m.loads(_z.decompress(_b.a2b_base64({code!r}))) if tuple(_s.version_info[:2]) == {version!r} else compile(_z.decompress(_b.a2b_base64({source!r})), "<harness>", "exec"))
"""


def _packed(data: bytes) -> str:
    return binascii.b2a_base64(zlib.compress(data, 9), newline=False).decode("ascii")


@functools.lru_cache(maxsize=1)
def _harness_code() -> tuple[str, str]:
    """The harness as (compressed marshalled code, compressed source), each base64."""
    return _packed(marshal.dumps(compile(HARNESS, "<harness>", "exec"))), _packed(HARNESS.encode())


class _Undecodable(ValueError):
    pass


def decode_value(obj: object, depth: int = 0) -> object:
    """A value the harness reported (see ``_enc`` in :data:`HARNESS`) as plain data: never the program's objects."""
    if depth > MAX_DEPTH:
        raise _Undecodable("nested too deeply")
    if obj is None or isinstance(obj, bool):
        return obj
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
        raise _Undecodable(f"malformed value {str(obj)[:80]}")
    tag, rest = obj[0], obj[1:]
    sub = lambda xs: [decode_value(x, depth + 1) for x in xs]  # noqa: E731
    pairs = lambda xs: [(decode_value(k, depth + 1), decode_value(v, depth + 1)) for k, v in xs]  # noqa: E731
    try:
        if tag == "i":
            return int(rest[0], 16)
        if tag == "f":
            return float.fromhex(rest[0])
        if tag == "c":
            return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
        if tag == "s":
            return str(rest[0])
        if tag in ("b", "B"):
            return (bytes if tag == "b" else bytearray).fromhex(rest[0])
        if tag in ("d", "C", "O"):
            items = pairs(rest[0])
            return collections.Counter(dict(items)) if tag == "C" else (dict if tag == "d" else collections.OrderedDict)(items)
        if tag in ("l", "t", "S", "F"):
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](sub(rest[0]))
        if tag == "q":
            return collections.deque(sub(rest[0]), rest[1])
        if tag == "r":
            r = range(int(rest[0]), int(rest[1]), int(rest[2]))
            if len(r) > MAX_RANGE:
                raise _Undecodable(f"a range of {len(r)} numbers is too long to check")
            return r
        if tag == "D":
            return decimal.Decimal(str(rest[0]))
        if tag == "Q":
            return fractions.Fraction(int(rest[0], 16), int(rest[1], 16))
    except (TypeError, ValueError, IndexError, ArithmeticError) as e:
        raise _Undecodable(f"malformed value: {e}") from None
    raise _Undecodable(f"unknown value tag {tag!r}")


def _bound_names(source: str) -> set[str]:
    """Every name the program (or setup code) binds anywhere, except plain imports of host modules."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                plain = isinstance(node, ast.Import) and alias.asname in (None, alias.name) and bound in HOST_MODULES
                if not plain:
                    names.add(bound)
    return names


class _Holes(ast.NodeTransformer):
    """Replace each maximal sub-expression that needs the program's names by a hole ``_hN`` (run in the sandbox)."""

    def __init__(self, program_names: set[str], first: int, host_names: Collection[str] = ()):
        self.program_names = program_names
        self.host_names = frozenset(host_names)
        self.sources: list[str] = []
        self.first = first

    def host_only(self, node: ast.AST) -> bool:
        loaded, stored = set(), set()
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                (loaded if isinstance(n.ctx, ast.Load) else stored).add(n.id)
            elif isinstance(n, ast.arg):
                stored.add(n.arg)
            elif isinstance(n, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
                return False
        free = loaded - stored
        return all(name in self.host_names or (name not in self.program_names and
                                                (name in HOST_BUILTINS or name in HOST_MODULES)) for name in free)

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.keyword):
            return self.generic_visit(node)
        if not isinstance(node, ast.expr) or self.host_only(node):
            return node
        if isinstance(node, (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.IfExp,
                             ast.Starred)) or \
                (isinstance(node, ast.Call) and self.host_only(node.func) and ast.unparse(node.func) in HOST_CALLS):
            return self.generic_visit(node)
        self.sources.append(ast.unparse(node))
        return ast.copy_location(ast.Name(id=f"_h{self.first + len(self.sources) - 1}", ctx=ast.Load()), node)


@dataclass(frozen=True)
class TestCheck:
    """How one test is judged: ``expr`` (host side, holes as names) or, for a non-assert statement, in the sandbox."""

    source: str
    holes: tuple[int, ...]
    expr: ast.Expression | None
    left: tuple[str, int] | None = None  # ``assert f(x) == y`` with f(x) a hole: its source and hole, for feedback


@dataclass(frozen=True)
class Harness:
    """A built test harness: the program for the sandbox, its per-run marker, and how the host judges each test
    (``host``: the values the host binds to names when it evaluates the tests, never sent to the program)."""

    program: str
    marker: str
    checks: tuple[TestCheck, ...]
    host: Mapping[str, object] = field(default_factory=dict)


def plan_tests(solution: str, tests: Sequence[str], setup: str = "",
               host_names: Collection[str] = ()) -> tuple[list[tuple[int, str, str]], tuple[TestCheck, ...]]:
    """Split each test into holes (sub-expressions that need the program) and a host-side check.

    ``host_names`` are names the host binds itself (e.g. expected values computed elsewhere): a test's use of one
    is never a hole, even when the program defines the same name. The plan depends on the program only through
    which of the tests' names it binds, so it is cached on that (many solutions of one task share it).
    """
    tests = tuple(tests)
    names = (_bound_names(solution) | _setup_names(setup)) & _test_names(tests)
    holes, checks = _plan(tests, frozenset(names), frozenset(host_names))
    return list(holes), checks


@functools.lru_cache(maxsize=1024)
def _setup_names(setup: str) -> frozenset[str]:
    return frozenset(_bound_names(setup))


@functools.lru_cache(maxsize=4096)
def _test_names(tests: tuple[str, ...]) -> frozenset[str]:
    """Every name the tests mention: the only program names that can change how they are split."""
    used: set[str] = set()
    for test in tests:
        try:
            used.update(n.id for n in ast.walk(ast.parse(test)) if isinstance(n, ast.Name))
        except SyntaxError:
            pass
    return frozenset(used)


@functools.lru_cache(maxsize=4096)
def _plan(tests: tuple[str, ...], names: frozenset[str],
          host_names: frozenset[str]) -> tuple[tuple[tuple[int, str, str], ...], tuple[TestCheck, ...]]:
    holes: list[tuple[int, str, str]] = []
    checks = []
    for i, test in enumerate(tests):
        try:
            body = ast.parse(test).body
        except SyntaxError:
            body = []
        if len(body) == 1 and isinstance(body[0], ast.Assert):
            expr = body[0].test
            tr = _Holes(set(names), len(holes), host_names)
            new = tr.visit(copy.deepcopy(expr))
            left = None
            if isinstance(new, ast.Compare) and len(new.ops) == 1 and isinstance(new.left, ast.Name) \
                    and new.left.id.startswith("_h") and isinstance(expr, ast.Compare):
                left = (ast.unparse(expr.left), int(new.left.id[2:]))
            checks.append(TestCheck(test.strip(), tuple(range(len(holes), len(holes) + len(tr.sources))),
                                    ast.fix_missing_locations(ast.Expression(new)), left))
            holes += [(i, "eval", src) for src in tr.sources]
        else:  # not an assert: it must run without error in the sandbox (a hostile program can forge this one)
            checks.append(TestCheck(test.strip(), (len(holes),), None))
            holes.append((i, "exec", test))
    return tuple(holes), tuple(checks)


def _program(solution: str, setup: str, holes: list[tuple[int, str, str]], marker: str) -> str:
    code, source = _harness_code()
    return PROGRAM.format(marker=marker, setup=setup, solution=solution, holes=holes, depth=MAX_DEPTH,
                          version=tuple(sys.version_info[:2]), code=code, source=source)


def build_program(solution: str, tests: Sequence[str], setup: str = "", marker: str | None = None,
                  host: Mapping[str, object] | None = None) -> tuple[str, Harness]:
    """The harness program and its :class:`Harness` (marker random when not given; ``host``: see :class:`Harness`)."""
    marker = marker or "@@agentloop-" + secrets.token_hex(8)
    host = dict(host or {})
    holes, checks = plan_tests(solution, tests, setup, host_names=host)
    program = _program(solution, setup, holes, marker)
    return program, Harness(program=program, marker=marker, checks=checks, host=host)


def trim(text: str, limit: int = FEEDBACK_CHARS) -> str:
    """Keep the end of long feedback (where the error is), marking the cut."""
    text = text.strip()
    return text if len(text) <= limit else "...\n" + text[-(limit - 4):]


def _judge(check: TestCheck, reports: dict[int, list], host: Mapping[str, object]) -> tuple[bool, str] | None:
    """(passed, message) for one test from its holes' reports; None when a hole was never reported."""
    if any(h not in reports for h in check.holes):
        return None
    values = {}
    for h in check.holes:
        rep = reports[h]
        if rep is _TWICE:
            return False, f"A result of this test was reported twice (the program wrote to the harness's channel): {check.source}"
        if rep[0] == "x":
            return False, str(rep[1])
        if rep[0] == "v":
            try:
                values[f"_h{h}"] = decode_value(rep[1])
            except _Undecodable as e:
                return False, f"{check.source}: the harness could not read the value ({e})."
    if check.expr is None:
        return True, ""
    env = {**_host_env(), **host}
    try:
        ok = bool(eval(_compiled(check.expr), env, values))  # noqa: S307 - the test's own code
    except Exception as e:  # the test itself raised on the program's values (e.g. a TypeError comparing)
        return False, f"{type(e).__name__}: {e} (in {check.source})"
    if ok:
        return True, ""
    msg = "AssertionError: " + check.source
    if check.left is not None:
        msg += " (" + check.left[0] + " returned " + repr(values.get(f"_h{check.left[1]}"))[:300] + ")"
    return False, msg


@functools.lru_cache(maxsize=1)
def _host_env() -> dict[str, object]:
    return {"__builtins__": HOST_BUILTINS, **{m: importlib.import_module(m) for m in HOST_MODULES}}


@functools.lru_cache(maxsize=8192)
def _compiled(expr: ast.Expression):
    return compile(expr, "<test>", "eval")  # (a cached plan shares its checks, so this compiles each test once)


_TWICE: list = ["twice"]


def _read_reports(result: ExecResult, marker: str) -> tuple[tuple[str, str] | None, dict[int, list]]:
    """The harness's output: why it stopped before the tests (``(stage, message)``), if it did; each hole's report."""
    stop: tuple[str, str] | None = None
    reports: dict[int, list] = {}
    for line in result.stdout.splitlines():
        if not line.startswith(marker + " "):
            continue
        try:
            ev = json.loads(line[len(marker) + 1:])
        except (json.JSONDecodeError, RecursionError):
            continue
        if not isinstance(ev, list) or not ev:
            continue
        if ev[0] in ("load", "setup") and len(ev) == 2 and stop is None:
            stop = (ev[0], str(ev[1]))
        elif ev[0] == "h" and len(ev) >= 3 and isinstance(ev[1], int):
            reports[ev[1]] = _TWICE if ev[1] in reports else ev[2:]
    return stop, reports


def parse_report(result: ExecResult, harness: Harness, n_tests: int | None = None) -> TestReport:
    """Judge each test from the harness's output: the program reports values, the host compares them."""
    n_tests = len(harness.checks) if n_tests is None else n_tests
    stop, reports = _read_reports(result, harness.marker)
    outcomes = []
    for i, check in enumerate(harness.checks):
        judged = None if stop is not None else _judge(check, reports, harness.host)
        if judged is not None:
            outcomes.append(TestOutcome(index=i, passed=judged[0], message=judged[1]))
    n_ok = sum(o.passed for o in outcomes)
    failed = next((o for o in outcomes if not o.passed), None)
    if stop is not None:
        stage = "syntax" if "SyntaxError" in stop[1] or "IndentationError" in stop[1] else stop[0]
        feedback = stop[1]
    elif failed is not None:
        stage, feedback = "test", failed.message
    elif len(outcomes) == n_tests:
        stage, feedback = "ok", f"All {n_tests} tests passed."
    elif result.status == "timeout":
        stage, feedback = "timeout", f"Timeout: the program did not finish within the time limit (while running test {len(outcomes) + 1})."
    elif result.status == "sandbox_error":
        stage, feedback = "sandbox", "The sandbox failed to run the program: " + result.stderr
    else:
        stage = "crash"
        feedback = (f"The program exited before the tests finished (exit code {result.exit_code}).\n"
                    + trim(result.stderr)).strip()
        if result.status == "killed":
            feedback = f"The program was killed (signal {-(result.exit_code or 0)}): it may have exceeded the memory limit. " + feedback
    if result.status == "timeout" and stage == "test" and failed is None:
        stage = "timeout"
    return TestReport(passed=stage == "ok", tests_passed=n_ok, tests_total=n_tests, outcomes=tuple(outcomes),
                      feedback=trim(feedback), stage=stage, result=result)


def no_code_report(n_tests: int) -> TestReport:
    return TestReport(passed=False, tests_passed=0, tests_total=n_tests, stage="no_code",
                      feedback="No Python code found in your reply. Write the complete function in a ```python code block.")


def run_tests_many(items: Sequence[tuple[str | None, Sequence[str], str]], sandbox: Sandbox,
                   timeout_s: float = 5.0,
                   hosts: Sequence[Mapping[str, object] | None] | None = None) -> list[TestReport]:
    """Run many ``(solution or None, tests, setup)`` items in parallel; None means no code was found.

    ``hosts`` (one per item, optional): values the host binds to names when it judges that item's tests (see
    :class:`Harness`), e.g. expected outputs computed by :func:`run_expressions`.
    """
    if hosts is not None and len(hosts) != len(items):
        raise ValueError(f"run_tests_many: got {len(items)} items but {len(hosts)} hosts; pass one per item (or None).")
    programs, harnesses, where = [], [], []
    for i, (solution, tests, setup) in enumerate(items):
        if solution is not None:
            program, harness = build_program(solution, tests, setup, host=hosts[i] if hosts is not None else None)
            programs.append(program)
            harnesses.append(harness)
            where.append(i)
    results = sandbox.run_many(programs, timeout_s=timeout_s) if programs else []
    reports: list[TestReport | None] = [None] * len(items)
    for i, result, harness in zip(where, results, harnesses):
        reports[i] = parse_report(result, harness, len(items[i][1]))
    return [r if r is not None else no_code_report(len(items[i][1])) for i, r in enumerate(reports)]


def run_tests(solution: str | None, tests: Sequence[str], sandbox: Sandbox, setup: str = "",
              timeout_s: float = 5.0, host: Mapping[str, object] | None = None) -> TestReport:
    """Run one solution against its tests in the sandbox (``host``: see :class:`Harness`)."""
    return run_tests_many([(solution, tests, setup)], sandbox, timeout_s, hosts=[host])[0]


@dataclass(frozen=True)
class Evaluated:
    """One expression's value from :func:`run_expressions` (plain data), or why there is none."""

    ok: bool
    value: object = None
    message: str = ""


def run_expressions(solution: str, exprs: Sequence[str], sandbox: Sandbox, setup: str = "",
                    timeout_s: float = 5.0) -> tuple[list[Evaluated], ExecResult]:
    """Evaluate expressions against a program in one sandbox run, as the harness evaluates holes.

    For values the host needs from a trusted program, e.g. a reference solution's outputs on test inputs
    (EvalPlus): its own run, so a program judged later cannot touch it, and its values come back as plain data
    (:func:`decode_value`) to be held on the host. An expression that raised, returned a value that cannot be
    reported, or was not reached (the program failed to load, timed out or crashed) gets ``ok=False`` and a
    message (the last line of the error: a reference's source stays out of feedback).
    """
    marker = "@@agentloop-" + secrets.token_hex(8)
    program = _program(solution, setup, [(i, "eval", e) for i, e in enumerate(exprs)], marker)
    result = sandbox.run(program, timeout_s=timeout_s)
    stop, reports = _read_reports(result, marker)
    last = lambda text: (text.strip().splitlines() or [""])[-1][:300]  # noqa: E731
    if stop is not None:
        return [Evaluated(False, message=f"the program failed at {stop[0]}: {last(stop[1])}")] * len(exprs), result
    out = []
    for i in range(len(exprs)):
        rep = reports.get(i)
        if rep is None:
            why = {"timeout": "timed out"}.get(result.status, f"ended ({result.status}) first")
            out.append(Evaluated(False, message=f"not evaluated: the program {why}"))
        elif rep is _TWICE:
            out.append(Evaluated(False, message="its value was reported twice"))
        elif rep[0] != "v":
            out.append(Evaluated(False, message=last(str(rep[-1]))))
        else:
            try:
                out.append(Evaluated(True, value=decode_value(rep[1])))
            except _Undecodable as e:
                out.append(Evaluated(False, message=f"the value could not be read ({e})"))
    return out, result


__all__ = ["FEEDBACK_CHARS", "Evaluated", "Harness", "TestCheck", "TestOutcome", "TestReport", "build_program",
           "decode_value", "extract_code", "parse_report", "plan_tests", "run_expressions", "run_tests",
           "run_tests_many", "trim"]
