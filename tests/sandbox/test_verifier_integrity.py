"""A wrong solution can never make a code task report success, whatever it appends (issue 15, item 2).

Each trick below is appended to a solution that fails every test of MBPP task index 0 of
``code/mbpp-v0`` (``remove_Occ``) and run through the public environment; the verdict must be a
failure. The tricks are the ones a policy finds when the harness shares its process and its output
channel with the program it judges: ending the process early, replacing builtins, monkeypatching
the output path, forging or reconstructing the result marker, tampering with file descriptors, and
objects that claim to equal anything. The gold solution still passes. The same holds for EvalPlus
tests (``code/humaneval-format-v0``), whose expected outputs the reference computes in a run of its own:
a candidate that patches builtins cannot change them, nor bind ``_agentloop_expected`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agentloop.environments.code.envs import load_mbpp
from agentloop.registry import make
from agentloop.sandbox.local import bwrap_status

needs_bwrap = pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")

WRONG = "def remove_Occ(s, ch):\n    return s\n"

# Helpers the tricks share: every report line the old harness could print, for every test, marked passed.
FORGE = '''
import sys, os, json, gc, linecache
def _markers():
    found = set()
    for src in [''.join(v[2]) for v in list(linecache.cache.values()) if len(v) > 2 and v[2]]:
        for part in src.split("'"):
            if part.startswith("@@agentloop-"):
                found.add(part)
    f = sys._getframe()
    while f is not None:
        for v in list(f.f_globals.values()) + list(f.f_locals.values()):
            if isinstance(v, str) and v.startswith("@@agentloop-"):
                found.add(v)
        f = f.f_back
    for o in gc.get_objects():
        if isinstance(o, dict):
            for v in list(o.values()):
                if isinstance(v, str) and v.startswith("@@agentloop-"):
                    found.add(v)
    return found
def _forge():
    out = ""
    for m in _markers():
        for i in range(10):
            out += m + " " + json.dumps(["test", i, True, ""]) + "\\n"
    for stream in (getattr(sys, "__stdout__", None),):
        pass
    try:
        os.write(1, out.encode())
    except OSError:
        pass
'''

TRICKS = {
    "sys_exit": "import sys\nsys.exit(0)\n",
    "os_exit": "import os\nos._exit(0)\n",
    "os_exit_after_forging": FORGE + "_forge()\nos._exit(0)\n",
    "atexit_forges": FORGE + "import atexit\natexit.register(_forge)\n",
    "del_forges": FORGE + "class _D:\n    def __del__(self):\n        _forge()\n_keep = _D()\n",
    "assertion_error_replaced": "import builtins\nclass _Never(BaseException):\n    pass\nbuiltins.AssertionError = _Never\n",
    "exec_replaced": "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
    "compile_replaced": ("import builtins\n_c = builtins.compile\n"
                         "builtins.compile = lambda src, name, mode, *a, **k: _c('pass', name, mode)\n"),
    "eval_replaced": "import builtins\nbuiltins.eval = lambda *a, **k: True\n",
    "os_write_rewrites_results": ("import os\n_w = os.write\n"
                                  "os.write = lambda fd, b: _w(fd, b.replace(b'false', b'true'))\n"),
    "json_dumps_patched": ("import json\n_d = json.dumps\n"
                           "json.dumps = lambda o, *a, **k: _d([o[0], o[1], True, ''] if isinstance(o, list) and len(o) == 4 else o)\n"),
    "printed_markers_from_linecache_and_frames": FORGE + "_forge()\n",
    "harness_emit_patched_through_frames": (
        "import sys\n"
        "f = sys._getframe()\n"
        "while f is not None:\n"
        "    g = f.f_globals\n"
        "    for name, fn in list(g.items()):\n"
        "        if callable(fn) and getattr(fn, '__code__', None) is not None and fn.__code__.co_argcount == 4:\n"
        "            orig = fn\n"
        "            g[name] = (lambda o: lambda kind, i, ok, msg: o(kind, i, True, ''))(orig)\n"
        "    f = f.f_back\n"
    ),
    "stdout_closed": "import os\nos.close(1)\n",
    "stdout_redirected": "import os\nos.dup2(os.open(os.devnull, os.O_WRONLY), 1)\n",
    "always_equal_result": ("class _Eq(str):\n    def __eq__(self, other):\n        return True\n    __hash__ = str.__hash__\n"
                            "def remove_Occ(s, ch):\n    return _Eq(s)\n"),
    "always_equal_object": ("class _Any:\n    def __eq__(self, other):\n        return True\n"
                            "def remove_Occ(s, ch):\n    return _Any()\n"),
    "settrace_swallows_failures": (
        "import sys\n"
        "def _t(frame, event, arg):\n"
        "    if event == 'exception' and arg[0] is AssertionError:\n"
        "        frame.f_lineno = frame.f_lineno\n"
        "    return _t\n"
        "sys.settrace(_t)\n"
    ),
}


@pytest.fixture(scope="module")
def env():
    e = make("code/mbpp-v0")
    yield e.unwrapped
    e.close()


def _verdict(env, solution: str):
    task = env.get_task(0)
    return env.verify(task, f"```python\n{solution}\n```")


@needs_bwrap
def test_the_task_is_remove_occ_and_gold_passes(env):
    task = env.get_task(0)
    assert "remove_Occ" in task.answer["tests"][0]
    assert _verdict(env, task.answer["reference"]).success
    assert not _verdict(env, WRONG).success


@needs_bwrap
@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_a_wrong_solution_cannot_forge_success(env, trick):
    verdict = _verdict(env, WRONG + TRICKS[trick])
    assert not verdict.success, (trick, verdict.info, verdict.feedback)
    assert verdict.reward == 0.0


# -- the harness's pieces (no sandbox needed) ------------------------------------------------------------------------
from agentloop.environments.code.execution import build_program, decode_value, plan, plan_tests  # noqa: E402


def test_expected_values_never_reach_the_program():
    """The program gets only the sub-expressions that need its names; the expected values stay on the host."""
    row = load_mbpp()[10]  # task 11, remove_Occ
    tests = [t.replace('== "', '== "EXPECTED-') for t in row["test_list"]]  # distinctive expected values
    program, harness = build_program(WRONG, tests)
    assert len(harness.checks) == 3
    assert "EXPECTED" not in program
    holes, checks = plan_tests(WRONG, row["test_list"])
    assert [src for _, _, src in holes] == ["remove_Occ('hello', 'l')", "remove_Occ('abcda', 'a')", "remove_Occ('PHP', 'P')"]
    assert all(c.expr is not None for c in checks)


@pytest.mark.parametrize(("test", "holes"), [
    ("assert f(1) == 2", ["f(1)"]),
    ("assert math.isclose(f(1), 0.5, rel_tol=0.01)", ["f(1)"]),  # the comparison helper runs on the host
    ("assert set(f([1, 2])) == {1, 2}", ["f([1, 2])"]),
    ("assert f(1) == 2 or f(1) == 3", ["f(1)", "f(1)"]),
    ("assert f(x=g(2)) == 1", ["f(x=g(2))"]),
    ("assert sorted(f(1), key=g) == [1]", ["f(1)", "g"]),
    ("assert not f(1)", ["f(1)"]),
])
def test_holes_are_the_smallest_parts_that_need_the_program(test, holes):
    p = plan("def f(*a, **k): pass\ndef g(x): pass", [test])
    assert [src for _, _, src in p.holes] == holes
    assert not p.split  # each hole is a call of the program's: evaluated next to the solution, judged on the host


@pytest.mark.parametrize("test", [
    "assert f(1)[0] == 2",  # indexing, arithmetic, costly calls, loops on the program's values: the test's own work
    "assert f(1) * 2 == 4",
    "assert list(range(f(1))) == [0]",
    "assert math.factorial(f(1)) == 1",
    "assert all(f(x) == x for x in range(3))",
    "assert (lambda v: v == 1)(f(1))",
    "x = f(1)\nassert x == 1",
])
def test_tests_that_work_on_the_programs_values_run_whole_in_the_judges_process(test):
    p = plan("def f(*a, **k): pass\ndef g(x): pass", [test], program_names={"f", "g"})
    assert p.split and p.names == ("f",)  # the judge asks the program's process for f only, then calls it remotely
    # Whatever is not a plain call runs whole in the judge's process; calls are evaluated there and judged on the host.
    assert all(mode == "exec" or ast.parse(src, mode="eval").body.__class__ is ast.Call for _, mode, src in p.holes)


def test_names_the_program_shadows_are_evaluated_in_the_sandbox():
    # A solution that defines its own ``sorted`` is judged with it (the test calls the program's sorted) ...
    got, _ = plan_tests("def sorted(x): return x", ["assert sorted([2, 1]) == [1, 2]"])
    assert [src for _, _, src in got] == ["sorted([2, 1])"]
    # ... while a plain ``import math`` leaves math.isclose to the host, and ``import math as m`` does not.
    assert [s for _, _, s in plan_tests("import math", ["assert math.isclose(f(1), 1.0)"])[0]] == ["f(1)"]
    assert [s for _, _, s in plan_tests("import math as m", ["assert m.isclose(f(1), 1.0)"])[0]] == ["m.isclose(f(1), 1.0)"]


def test_values_decode_as_plain_data_only():
    import collections
    import decimal
    import fractions

    cases = [None, True, 0, -(10 ** 5000), 1.5, float("inf"), 1 + 2j, "x", b"y", bytearray(b"z"), [1, (2, 3)],
             {1: "a"}, {1, 2}, frozenset({3}), collections.Counter("aab"), collections.OrderedDict(a=1),
             collections.deque([1], 3), range(1, 5, 2), decimal.Decimal("1.10"), fractions.Fraction(1, 3)]
    import json as _json
    ns: dict = {"_DEPTH": 100}
    from agentloop.environments.code.execution import HARNESS
    exec(HARNESS.split("def _trace")[0], ns)  # the harness's encoder, as the program runs it
    for v in cases:
        back = decode_value(_json.loads(_json.dumps(ns["_enc"](v, 0))))
        assert back == v and type(back) is type(v), v
    for bad in (["x", 1], ["i"], ["l", [["o", 1]]], 5, "s", ["d", [[["l", []], 1]]], ["S", [["l", []]]],
                ["r", 0, 10 ** 12, 1]):
        with pytest.raises(ValueError):
            decode_value(bad)
    deep: list = ["l", []]
    for _ in range(200):
        deep = ["l", [deep]]
    with pytest.raises(ValueError):
        decode_value(deep)


# -- EvalPlus tests (code/humaneval-format-v0): the reference's outputs are host-held plain data ---------------------
HE_FIXTURE = str(Path(__file__).parents[1] / "environments" / "fixtures" / "formats" / "humaneval.jsonl")
# running_max starting from 0: passes the base tests, fails the plus input [-3, -5, -1] (gives [0, 0, 0]).
PLUS_WRONG = ("def running_max(xs):\n    out, best = [], 0\n    for x in xs:\n        best = max(best, x)\n"
              "        out.append(best)\n    return out\n")
PLUS_TRICKS = {
    # When the reference ran in the candidate's process, these made it compute the candidate's wrong answers.
    "builtins_max_patched": "import builtins\n_max = builtins.max\nbuiltins.max = lambda *a, **k: _max(0, *a)\n",
    "deepcopy_patched": ("import copy\n"
                         "copy.deepcopy = lambda x, *a: [[abs(v) for v in x[0]]] if x and isinstance(x[0], list) else x\n"),
    "expected_defined_by_the_program": ("class _Any:\n    def __eq__(self, other):\n        return True\n"
                                        "_agentloop_expected = [_Any()] * 10\n"),
    "os_write_rewrites_results": TRICKS["os_write_rewrites_results"],
    "eval_replaced": TRICKS["eval_replaced"],
    "os_exit_after_forging": TRICKS["os_exit_after_forging"],
}


@pytest.fixture(scope="module")
def he_env():
    e = make("code/humaneval-format-v0", path=HE_FIXTURE)
    yield e.unwrapped
    e.close()


@needs_bwrap
@pytest.mark.parametrize("trick", sorted(PLUS_TRICKS))
def test_a_wrong_solution_cannot_pass_evalplus_tests(he_env, trick):
    task = he_env.get_task(0)
    assert "best is None" not in task.answer["setup"]  # the reference is not part of the candidate's program
    assert he_env.verify(task, he_env.gold_reply(task)).success
    verdict = he_env.verify(task, f"```python\n{PLUS_WRONG}{PLUS_TRICKS[trick]}\n```")
    assert not verdict.success and verdict.reward == 0.0, (trick, verdict.info, verdict.feedback)
    assert verdict.info["tests_passed"] <= 5
    assert [e.value for e in he_env.expected(task)] == [[1, 2], [-3, -3, -1], [0]]  # the cache is untouched
