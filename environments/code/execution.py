"""Code extraction and test execution for code environments (importable helpers for the algorithms).

* :func:`extract_code`: the program in a model reply: the first fenced block tagged ``python``/``py``
  (or untagged), a block left open by a stop string, or the whole reply when it parses as Python.
* :func:`build_program`: the test harness, built so that the program cannot forge its verdict, whatever the
  tests' shape. Each test is planned on the host (:func:`plan`): an ``assert`` is split into *holes*, the
  smallest sub-expressions that need a name the program (or the setup code) defines, e.g.
  ``remove_Occ("hello", "l")``, and the rest, e.g. ``_h0 == "heo"``, which the host evaluates itself on the
  holes' values, decoded as plain data (:func:`decode_value`: ints, floats, strings, bytes, lists, tuples,
  sets, dicts, Counter, OrderedDict, deque, range, Decimal, Fraction, never an object of the program's), with
  the real builtins, only comparing them and passing them to a few cheap helpers (:data:`HOST_CALLS`:
  ``sorted``, ``set``, ``math.isclose``, ...), so a program cannot make the host compute for long or
  allocate much. Two ways to run, chosen per task:

  - *Fast path* (MBPP's 2,922 tests, all ``assert <call> == <value>``): when every test is an assert whose
    holes are calls of the program's own functions (their value is the program's output, whatever it is),
    the holes are evaluated in the program's process, next to the solution and the setup code.
  - *Split* (everything else: loops, locals, comprehensions, lambdas, test helper functions, seeded
    ``random``, ``abs(f(x) - y) < eps``, HumanEval's ``check(candidate)``, statements that are not
    asserts): the sandboxed program forks before the solution is loaded. The parent is the *judge*: it
    never runs the program's code, has the real builtins, runs the setup code and the tests (the holes of
    asserts judged on the host, the other tests whole), and alone holds the channel to the host. The child
    loads the solution, has no channel but a pipe to the judge, and only answers the judge's requests
    (call this function with these arguments, read this attribute) with tagged plain data. The judge turns
    the program's functions and any other object of the program's into handles that can only be called or
    have attributes read; comparing, hashing, iterating, converting or doing arithmetic on one is a
    ``TypeError`` in the test. The judge is non-dumpable, so the child (same uid) cannot open its
    ``/proc/<pid>/fd`` or ``mem``, and the seccomp filter refuses ``ptrace`` and ``process_vm_*``; killing
    or stopping it only loses the verdict.

  So no object of the program's ever reaches the code that judges it, and exiting early, replacing builtins,
  patching ``os.write`` or ``json``, printing or reconstructing the per-run marker, patching the harness,
  tampering with file descriptors, or returning objects whose comparison, conversion, arithmetic, iteration,
  hashing or ``__class__`` lie gain nothing: a missing or doubled report fails the test, and a forged report
  is only a value the program's function could have returned. ``program_names`` (:func:`reference_names`
  reads them from the task's reference solution) are the only names the tests take from the program: a
  program that defines or patches ``abs``, ``isinstance``, ``all``, ``math.isclose`` or a prompt's helper
  changes nothing the tests use. tests/sandbox/test_forgery.py runs every trick on every code format.

  What is not covered, each with its test in tests/sandbox/test_forgery.py (``test_not_covered_*``):
  returning the right answers for tests the program can read (the test code is in its memory; MBPP's
  prompt shows the first test) -- hard-coding, not forging; without ``program_names`` (a task file with
  no reference) every name the program binds is the program's, as in a plain run, so ``def abs`` changes
  the tests' ``abs``; values that cannot cross as plain data (a generator, an object of the program's
  class the test compares) fail the test even when a plain run would pass; an argument the program
  mutates comes back only at the top level (``l.sort()`` is seen, nested identity is not); the tests'
  ``random`` is their own, so a program that draws random numbers no longer shifts the tests' sequence;
  and values the host holds (``host=``) are usable only in asserts whose holes are calls (EvalPlus's
  shape).
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
import hashlib
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
from agentloop.sandbox.pool import PRELUDES

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
import io as _io, json as _json, os as _os, sys as _sys, traceback as _tb, linecache as _lc, builtins as _bi
import collections as _col, decimal as _dec, fractions as _fr
def _emit(obj):
    line = _M + " " + _json.dumps(obj) + "\n"
    try:
        _os.write(1, line.encode("utf-8", "replace"))
    except OSError:
        pass
def _enc(v, d, ext=None):
    if d > _DEPTH:
        raise ValueError("nested too deeply")
    if v is None or v is True or v is False:
        return v
    if ext is None:
        return _plain(v, d, None)
    r = ext(v, False)  # a reference to an object of the other process
    if r is not None:
        return r
    try:
        return _plain(v, d, ext)
    except TypeError:  # not plain data (or an object lying about its type): it stays where it is, as a handle
        return ext(v, True)
def _plain(v, d, ext):
    t, e = type(v), lambda xs: [_enc(x, d + 1, ext) for x in xs]
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
        return ["C", [[_enc(k, d + 1, ext), _enc(x, d + 1, ext)] for k, x in dict.items(v)]]
    if isinstance(v, _col.OrderedDict):
        return ["O", [[_enc(k, d + 1, ext), _enc(x, d + 1, ext)] for k, x in dict.items(v)]]
    if isinstance(v, dict):
        return ["d", [[_enc(k, d + 1, ext), _enc(x, d + 1, ext)] for k, x in dict.items(v)]]
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
    if ext is not None:
        return ext(v, True)
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
def _run_holes(g):
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
def _main():
    if _SPLIT:
        return _split()
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
    _run_holes(g)
# -- split mode: the tests run here (the judge), the solution in a forked process of its own (the candidate) ----------
_P = {}
def _send(obj):
    b = _json.dumps(obj).encode()
    data = len(b).to_bytes(4, "big") + b
    while data:
        data = data[_os.write(_P["w"], data):]
def _readn(n):
    buf = bytearray()
    while len(buf) < n:
        c = _os.read(_P["r"], min(n - len(buf), 1 << 20))
        if not c:
            raise EOFError("the program's process ended")
        buf += c
    return bytes(buf)
def _recv():
    n = int.from_bytes(_readn(4), "big")
    if n > 1 << 26:
        raise ValueError("a message from the program is too long")
    m = _json.loads(_readn(n))
    if type(m) is not list or not m or type(m[0]) is not str:
        raise ValueError("a malformed message from the program")
    return m
def _rpc(msg):
    _send(msg)
    while True:
        m = _recv()
        if m[0] in ("v", "x"):
            return m
        _send(_P["serve"](m))
def _decv(o, d, imp):
    if d > _DEPTH:
        raise ValueError("nested too deeply")
    if o is None or o is True or o is False:
        return o
    if type(o) is not list or not o or type(o[0]) is not str:
        raise ValueError("a malformed value")
    tag, r = o[0], o[1:]
    sub = lambda xs: [_decv(x, d + 1, imp) for x in _lst(xs)]
    pairs = lambda xs: [(_decv(_lst(p)[0], d + 1, imp), _decv(_lst(p)[1], d + 1, imp)) for p in _lst(xs)]
    if tag == "i":
        return int(_str(r[0]), 16)
    if tag == "f":
        return float.fromhex(_str(r[0]))
    if tag == "c":
        return complex(float.fromhex(_str(r[0])), float.fromhex(_str(r[1])))
    if tag == "s":
        return _str(r[0])
    if tag in ("b", "B"):
        return (bytes if tag == "b" else bytearray).fromhex(_str(r[0]))
    if tag in ("d", "C", "O"):
        items = pairs(r[0])
        return _col.Counter(dict(items)) if tag == "C" else (dict if tag == "d" else _col.OrderedDict)(items)
    if tag in ("l", "t", "S", "F"):
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](sub(r[0]))
    if tag == "q":
        return _col.deque(sub(r[0]), None if r[1] is None else _int(r[1]))
    if tag == "r":
        return range(_int(r[0]), _int(r[1]), _int(r[2]))
    if tag == "D":
        return _dec.Decimal(_str(r[0]))
    if tag == "Q":
        return _fr.Fraction(int(_str(r[0]), 16), int(_str(r[1]), 16))
    if tag in ("H", "R"):
        return imp(tag, r)
    raise ValueError("an unknown value tag")
def _lst(x):
    if type(x) is not list:
        raise ValueError("a malformed value")
    return x
def _str(x):
    if type(x) is not str:
        raise ValueError("a malformed value")
    return x
def _int(x):
    if type(x) is not int:
        raise ValueError("a malformed value")
    return x
def _export(v):
    oid = len(_P["objs"])
    _P["objs"][oid] = v
    return ["H", oid, type(v).__name__[:80]]
def _local(r):
    oid = r[0] if r else None
    if type(oid) is not int or oid not in _P["objs"]:
        raise ValueError("a reference to an unknown object")
    return _P["objs"][oid]
def _args(m):
    a, k = _lst(m[2]), m[3]
    if type(k) is not dict:
        raise ValueError("a malformed call")
    return [_decv(x, 0, _P["imp"]) for x in a], {_str(n): _decv(x, 0, _P["imp"]) for n, x in k.items()}
def _error(e):
    return ["x", type(e).__name__, _trace(e, "<solution>")[-3000:]]
MUTABLE = (list, dict, set, bytearray, _col.deque)
# The judge's side: real builtins, the test's own code; the program's objects are only ever handles (_Remote).
class ProgramError(Exception):
    "An exception the program raised that is not one of Python's built-in exceptions (its message and traceback)."
class _Remote:
    __slots__ = ("_oid", "_tn")
    def __init__(self, oid, tn):
        self._oid, self._tn = oid, tn
    def __call__(self, *a, **k):
        ext = _jext
        args = [_enc(x, 0, ext) for x in a]
        m = _rpc(["call", self._oid, args, {n: _enc(x, 0, ext) for n, x in k.items()}])
        out = _reply(m)
        back = m[2] if m[0] == "v" and len(m) > 2 and type(m[2]) is list and len(m[2]) == len(a) else None
        for x, new in zip(a, back or ()):  # the program's changes to mutable arguments, as plain data
            if new is not None and type(x) in MUTABLE:
                try:
                    _update(x, _decv(new, 0, _jimp))
                except (ValueError, TypeError, KeyError):
                    pass
        return out
    def __getattr__(self, name):
        if name[:2] == "__":
            raise AttributeError(name)
        return _reply(_rpc(["attr", self._oid, name]))
    def __repr__(self):
        return "<an object of the program's type " + self._tn + ">"
    def _refuse(self, *a, **k):
        raise TypeError("the test cannot use " + repr(self) + " outside the program: only call it or read its "
                        "attributes; return plain values (numbers, strings, lists, dicts, ...)")
for _n in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__iter__",
           "__contains__", "__getitem__", "__setitem__", "__delitem__", "__hash__", "__int__", "__float__",
           "__index__", "__complex__", "__abs__", "__neg__", "__round__", "__reversed__"):
    setattr(_Remote, _n, _Remote._refuse)
def _update(x, new):
    if type(new) is not type(x):
        return
    if type(x) is dict:
        x.clear(); x.update(new)
    elif type(x) is set:
        x.clear(); x.update(new)
    elif type(x) is _col.deque:
        x.clear(); x.extend(new)
    else:
        x[:] = new
def _reply(m):
    if m[0] == "v" and len(m) >= 2:
        return _decv(m[1], 0, _jimp)
    if m[0] == "x" and len(m) == 3:
        cls, text = getattr(_bi, _str(m[1]), None), _str(m[2])
        if not (isinstance(cls, type) and issubclass(cls, Exception)) or m[1] == "ProgramError":
            cls = ProgramError
        try:
            exc = cls("the program raised " + _str(m[1])[:80] + ":\n" + text)
        except Exception:
            exc = ProgramError("the program raised " + _str(m[1])[:80] + ":\n" + text)
        raise exc
    raise ValueError("a malformed reply from the program")
def _jext(v, export):
    if type(v) is _Remote:
        return ["R", object.__getattribute__(v, "_oid")]
    return _export(v) if export else None
def _jimp(tag, r):
    if tag == "H":
        return _Remote(_int(r[0]), _str(r[1])[:80])
    return _local(r)
def _jserve(m):
    # The program may only call what the test passed to it (a key function, a callback), with plain values.
    try:
        if m[0] != "call" or len(m) != 4:
            raise TypeError("the program may only call the test's objects")
        f = _local(m[1:])
        a, k = _args(m)
        return ["v", _enc(f(*a, **k), 0, _jext)]
    except Exception as e:
        return ["x", type(e).__name__, str(e)[:300]]
def _judge(pid):
    _P.update(serve=_jserve, imp=_jimp)
    _sys.stdout = _io.StringIO()
    try:
        m = _recv()
    except Exception:
        m = ["load", "The program's process ended before the tests ran."]
    if m != ["ready"]:
        _emit(["load", str(m[1]) if len(m) == 2 and m[0] == "load" else "The program failed to load."]); return
    g = {"__name__": "__main__"}
    for n in _MODULES:
        g[n] = __import__(n)
    try:
        named = _reply(_rpc(["names", _NAMES]))
        if type(named) is not dict:
            raise ValueError("a malformed reply from the program")
    except Exception as e:
        _emit(["load", "The program's names could not be read: " + str(e)[:300]]); return
    for n, v in named.items():
        if n in _NAMES:
            g[n] = v
    if _SETUP:
        try:
            _load("<setup>", _SETUP, g)
        except BaseException as e:
            _emit(["setup", _trace(e, "<setup>")]); return
    _run_holes(g)
# The candidate's side: the solution and everything it does; it can only answer the judge's requests.
class _Stub:
    __slots__ = ("oid",)
    def __init__(self, oid):
        self.oid = oid
    def __call__(self, *a, **k):
        m = _rpc(["call", self.oid, [_enc(x, 0, _cext) for x in a], {n: _enc(x, 0, _cext) for n, x in k.items()}])
        if m[0] == "v":
            return _decv(m[1], 0, _cimp)
        raise RuntimeError("the test's function raised " + str(m[1]) + ": " + str(m[2]))
def _cext(v, export):
    if type(v) is _Stub:
        return ["R", v.oid]
    return _export(v) if export else None
def _cimp(tag, r):
    return _Stub(_int(r[0])) if tag == "H" else _local(r)
def _cserve(m):
    try:
        if m[0] == "names":
            g = _P["g"]
            return ["v", ["d", [[["s", n], _enc(g[n], 0, _cext)] for n in _lst(m[1]) if type(n) is str and n in g]]]
        if m[0] == "attr":
            return ["v", _enc(getattr(_local(m[1:]), _str(m[2])), 0, _cext)]
        if m[0] == "call":
            f = _local(m[1:])
            a, k = _args(m)
            out = _enc(f(*a, **k), 0, _cext)
            return ["v", out, [_enc(x, 0, _cext) if type(x) in MUTABLE else None for x in a]]
        raise ValueError("an unknown request")
    except SystemExit:
        return ["x", "ProgramError", "The program called exit() during the test."]
    except BaseException as e:
        return _error(e)
def _candidate():
    _P.update(serve=_cserve, imp=_cimp, g={"__name__": "__main__"})
    _sys.stdout = _io.StringIO()
    try:
        _load("<solution>", _SOLUTION, _P["g"])
    except SystemExit:
        _send(["load", "The program called exit() before the tests ran."]); _os._exit(0)
    except BaseException as e:
        _send(["load", _trace(e, "<solution>")]); _os._exit(0)
    _send(["ready"])
    while True:
        try:
            m = _recv()
        except BaseException:
            _os._exit(0)
        _send(_cserve(m))
def _split():
    # Neither process may read or write the other's memory or file descriptors: a non-dumpable process's /proc
    # entries (mem, fd) and ptrace are closed to processes of the same uid, and the seccomp filter refuses
    # process_vm_readv/writev and ptrace outright. Without that guarantee no test runs.
    import ctypes
    if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        _emit(["load", "The sandbox could not separate the tests from the program (prctl failed)."]); return
    jr, cw = _os.pipe()
    cr, jw = _os.pipe()
    pid = _os.fork()
    if pid == 0:  # the candidate: no channel to the harness's output, only the pipes to the judge
        try:
            nul = _os.open(_os.devnull, _os.O_RDWR)
            for fd in (0, 1, 2):
                _os.dup2(nul, fd)
            for fd in (jr, jw, nul):
                _os.close(fd)
            _P.update(r=cr, w=cw, objs={})
            _candidate()
        finally:
            _os._exit(0)
    for fd in (cr, cw):
        _os.close(fd)
    _P.update(r=jr, w=jw, objs={})
    _judge(pid)
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
_SPLIT = {split!r}
_NAMES = {names!r}
_MODULES = {modules!r}
exec(_m.loads(_z.decompress(_b.a2b_base64({code!r}))) if tuple(_s.version_info[:2]) == {version!r} else compile(_z.decompress(_b.a2b_base64({source!r})), "<harness>", "exec"))
"""


# With a sandbox whose workers loaded the harness as a prelude (agentloop.sandbox.pool.PRELUDES), a program only
# sets the harness's data and calls it: no code to unpack, unmarshal or define in each run.
PRELUDE_SOURCE = HARNESS[:HARNESS.rindex("_main()")]
PRELUDE_NAME = "_agentloop_harness_" + hashlib.sha256(PRELUDE_SOURCE.encode()).hexdigest()[:12]
PRELUDE_PROGRAM = """import sys as _s
_h = _s.modules[{name!r}]
_h._M = {marker!r}
_h._SOLUTION = {solution!r}
_h._SETUP = {setup!r}
_h._HOLES = {holes!r}
_h._DEPTH = {depth!r}
_h._SPLIT = {split!r}
_h._NAMES = {names!r}
_h._MODULES = {modules!r}
_h._main()
"""
PRELUDES[PRELUDE_NAME] = PRELUDE_SOURCE


def _packed(data: bytes) -> str:
    return binascii.b2a_base64(zlib.compress(data, 9), newline=False).decode("ascii")


@functools.lru_cache(maxsize=2)
def _harness_code(split: bool = True) -> tuple[str, str]:
    """The harness as (compressed marshalled code, compressed source), each base64; without the split mode's code
    when ``split`` is false (the fast path's programs: each run decodes and unmarshals less than half as much)."""
    source = HARNESS if split else HARNESS[:HARNESS.index("# -- split mode")] + "_main()\n"
    return _packed(marshal.dumps(compile(source, "<harness>", "exec"))), _packed(source.encode())


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
    split: bool = False


@dataclass(frozen=True)
class Plan:
    """How a program is run against its tests (:func:`plan`).

    ``holes``: what the sandbox evaluates, ``(test index, "eval" | "exec", source)``; ``checks``: how the host
    judges each test from them. ``split``: run the tests in a process of their own, with the solution in another
    (see the module docstring); else (the fast path) the holes are evaluated next to the solution, which is
    safe only when each is a call of the program's own function. ``names``: what the judge's process asks the
    solution's process for; ``modules``: standard-library modules the tests use that the judge imports itself.
    """

    holes: tuple[tuple[int, str, str], ...]
    checks: tuple[TestCheck, ...]
    split: bool
    names: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()


def plan(solution: str, tests: Sequence[str], setup: str = "", host_names: Collection[str] = (),
         program_names: Collection[str] | None = None) -> Plan:
    """Split each test into holes (sub-expressions that need the program) and a host-side check, and choose where
    the holes run.

    ``host_names`` are names the host binds itself (e.g. expected values computed elsewhere): a test's use of one
    is never a hole, even when the program defines the same name. ``program_names``: the only names the tests may
    take from the program (e.g. the function the task asks for); every other name a test uses is the test's own
    (a builtin, a standard-library module, the setup's), even when the program defines it too (``def abs``).
    None: every name the program binds (a plain run's rule). The plan depends on the program only through which
    of these names it binds, so it is cached on that (many solutions of one task share it).
    """
    tests = tuple(tests)
    own = _bound_names(solution)
    if program_names is not None:
        own &= set(program_names)
    setup_names = _setup_names(setup)
    used = _test_names(tests)
    return _plan(tests, frozenset((own | setup_names) & used), frozenset(host_names),
                 frozenset(own & (used | _test_names((setup,)))), setup_names)


def reference_names(reference: str | None, tests: Sequence[str], setup: str = "") -> frozenset[str] | None:
    """The names a task's tests take from the program, read from its reference solution: what the reference
    binds that the tests or setup use (None without a reference). For ``program_names=``: a candidate that also
    defines ``abs`` or ``sorted`` then cannot change what the tests' own ``abs`` or ``sorted`` do."""
    if not reference:
        return None
    return frozenset(_module_names(reference) & (_test_names(tuple(tests)) | _test_names((setup,))))


def _module_names(source: str) -> set[str]:
    """The names a program binds at module level (a parameter or local called ``list`` is not one)."""
    try:
        body = list(ast.parse(source).body)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    while body:
        node = body.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
                names.add(sub.id)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                names.update(a.asname or a.name.split(".")[0] for a in sub.names)
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(sub.name)  # (defined inside an if/try at module level; its body is not walked further)
            elif isinstance(sub, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                pass
    return names


def plan_tests(solution: str, tests: Sequence[str], setup: str = "", host_names: Collection[str] = (),
               program_names: Collection[str] | None = None) -> tuple[list[tuple[int, str, str]], tuple[TestCheck, ...]]:
    """The holes and checks of :func:`plan`."""
    p = plan(solution, tests, setup, host_names, program_names)
    return list(p.holes), p.checks


def _root(node: ast.AST) -> str | None:
    """The name a call or attribute chain starts from (``a.b(1).c(2)`` -> ``a``)."""
    while isinstance(node, (ast.Call, ast.Attribute)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _program_output(src: str, own: frozenset[str]) -> bool:
    """Whether a hole's value is only the program's own output: a call of (a method of) one of its functions or
    one of its names (arguments may be anything), never a test's comparison, arithmetic, indexing or loop applied
    to the program's objects (which the program's own methods would then compute)."""
    node = ast.parse(src, mode="eval").body
    return isinstance(node, (ast.Call, ast.Name)) and _root(node) in own


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
def _plan(tests: tuple[str, ...], names: frozenset[str], host_names: frozenset[str], program: frozenset[str],
          setup_names: frozenset[str]) -> Plan:
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
        else:  # not an assert: it must run without error (in the judge's process: see Plan.split)
            checks.append(TestCheck(test.strip(), (len(holes),), None))
            holes.append((i, "exec", test))
    # The fast path (holes next to the solution) only when every hole is the program's own output; a name the setup
    # binds is the test's (HumanEval's ``candidate``, a helper): next to the solution the program could rebind it.
    own = program - setup_names
    split = any(mode == "exec" or not _program_output(src, own) for _, mode, src in holes)
    if split:  # the judge's process runs each assert whose holes are more than calls as a whole (host values aside)
        holes, checks = _whole_asserts(tests, holes, checks, host_names)
    used = names | program | _test_names(tests)
    return Plan(tuple(holes), tuple(checks), split, tuple(sorted(program)),
                tuple(sorted(m for m in HOST_MODULES if m in used and m not in program)))


def _whole_asserts(tests: tuple[str, ...], holes: list[tuple[int, str, str]], checks: list[TestCheck],
                   host_names: frozenset[str]) -> tuple[list[tuple[int, str, str]], list[TestCheck]]:
    """For the split mode: an assert with a hole that is not a plain call (a comprehension, arithmetic, indexing)
    runs whole in the judge's process, on the plain values the program's calls return; the others keep their
    holes (the judge evaluates them) and the host's check, which can say what a call returned."""
    new_holes: list[tuple[int, str, str]] = []
    new_checks = []
    for i, check in enumerate(checks):
        mine = [holes[h] for h in check.holes]
        calls = all(mode == "eval" and isinstance(ast.parse(src, mode="eval").body, (ast.Call, ast.Name))
                    for _, mode, src in mine)
        if check.expr is None or calls or _test_names((tests[i],)) & host_names:
            first = len(new_holes)
            renumber = {f"_h{h}": f"_h{first + k}" for k, h in enumerate(check.holes)}
            expr = check.expr
            if expr is not None and renumber:
                expr = ast.fix_missing_locations(_Rename(renumber).visit(copy.deepcopy(expr)))
            left = (check.left[0], first + check.holes.index(check.left[1])) if check.left else None
            new_checks.append(TestCheck(check.source, tuple(range(first, first + len(mine))), expr, left))
            new_holes += mine
        else:
            new_checks.append(TestCheck(check.source, (len(new_holes),), None))
            new_holes.append((i, "exec", tests[i]))
    return new_holes, new_checks


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]):
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(id=self.names.get(node.id, node.id), ctx=node.ctx), node)


def _program(solution: str, setup: str, holes: list[tuple[int, str, str]], marker: str, split: bool = False,
             names: Sequence[str] = (), modules: Sequence[str] = (), prelude: bool = False) -> str:
    if prelude:
        return PRELUDE_PROGRAM.format(name=PRELUDE_NAME, marker=marker, setup=setup, solution=solution, holes=holes,
                                      depth=MAX_DEPTH, split=split, names=list(names), modules=list(modules))
    code, source = _harness_code(split)
    return PROGRAM.format(marker=marker, setup=setup, solution=solution, holes=holes, depth=MAX_DEPTH, split=split,
                          names=list(names), modules=list(modules), version=tuple(sys.version_info[:2]), code=code,
                          source=source)


def build_program(solution: str, tests: Sequence[str], setup: str = "", marker: str | None = None,
                  host: Mapping[str, object] | None = None,
                  program_names: Collection[str] | None = None, prelude: bool = False) -> tuple[str, Harness]:
    """The harness program and its :class:`Harness` (marker random when not given; ``host``: see :class:`Harness`;
    ``program_names``: see :func:`plan`; ``prelude``: the sandbox that runs it has loaded :data:`PRELUDE_NAME`,
    see :func:`has_prelude`)."""
    marker = marker or "@@agentloop-" + secrets.token_hex(8)
    host = dict(host or {})
    p = plan(solution, tests, setup, host_names=host, program_names=program_names)
    program = _program(solution, setup, list(p.holes), marker, p.split, p.names, p.modules, prelude)
    return program, Harness(program=program, marker=marker, checks=p.checks, host=host, split=p.split)


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


def has_prelude(sandbox: Sandbox) -> bool:
    """Whether every worker of ``sandbox`` has the harness loaded (programs for it then only carry their data)."""
    return PRELUDE_NAME in (getattr(sandbox, "preludes", None) or ())


def run_tests_many(items: Sequence[tuple[str | None, Sequence[str], str]], sandbox: Sandbox,
                   timeout_s: float = 5.0,
                   hosts: Sequence[Mapping[str, object] | None] | None = None,
                   program_names: Sequence[Collection[str] | None] | None = None) -> list[TestReport]:
    """Run many ``(solution or None, tests, setup)`` items in parallel; None means no code was found.

    ``hosts`` (one per item, optional): values the host binds to names when it judges that item's tests (see
    :class:`Harness`), e.g. expected outputs computed by :func:`run_expressions`. ``program_names`` (one per
    item, optional): the names its tests take from the program (see :func:`plan`).
    """
    for what, given in (("hosts", hosts), ("program_names", program_names)):
        if given is not None and len(given) != len(items):
            raise ValueError(f"run_tests_many: got {len(items)} items but {len(given)} {what}; pass one per item "
                             "(or None).")
    programs, harnesses, where = [], [], []
    prelude = has_prelude(sandbox)
    for i, (solution, tests, setup) in enumerate(items):
        if solution is not None:
            program, harness = build_program(solution, tests, setup, host=hosts[i] if hosts is not None else None,
                                             program_names=program_names[i] if program_names is not None else None,
                                             prelude=prelude)
            programs.append(program)
            harnesses.append(harness)
            where.append(i)
    results = sandbox.run_many(programs, timeout_s=timeout_s) if programs else []
    reports: list[TestReport | None] = [None] * len(items)
    for i, result, harness in zip(where, results, harnesses):
        reports[i] = parse_report(result, harness, len(items[i][1]))
    return [r if r is not None else no_code_report(len(items[i][1])) for i, r in enumerate(reports)]


def run_tests(solution: str | None, tests: Sequence[str], sandbox: Sandbox, setup: str = "",
              timeout_s: float = 5.0, host: Mapping[str, object] | None = None,
              program_names: Collection[str] | None = None) -> TestReport:
    """Run one solution against its tests in the sandbox (``host``: see :class:`Harness`; ``program_names``: see
    :func:`plan`)."""
    return run_tests_many([(solution, tests, setup)], sandbox, timeout_s, hosts=[host],
                          program_names=[program_names])[0]


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


__all__ = ["FEEDBACK_CHARS", "Evaluated", "Harness", "Plan", "plan", "reference_names", "TestCheck", "TestOutcome", "TestReport", "build_program",
           "decode_value", "extract_code", "parse_report", "plan_tests", "run_expressions", "run_tests",
           "run_tests_many", "trim"]
