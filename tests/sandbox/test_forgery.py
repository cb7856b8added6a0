"""The attack suite: every verdict-forging trick we know, against a wrong solution, on every code format (issue 26).

Formats: ``code/mbpp-v0``, ``code/tasks-v0``, ``code/mbpp-format-v0``, ``code/humaneval-format-v0`` and
EvalPlus inputs (both format environments). The tasks cover every test shape: plain asserts (judged on the host),
loops, locals, comprehensions, lambdas, helper functions of the test, seeded ``random``, tolerance checks
(``abs(f(x) - y) < eps``), ``isinstance`` checks, fixtures built by setup code, prompt helpers (HumanEval's
encode/decode pairs), and ``check(candidate)`` functions that are not only asserts.

The tricks (:data:`OBJECTS`, :data:`SHADOWS`, :data:`JUDGE_ATTACKS`, and the process-level ones of
test_verifier_integrity.py): returned objects whose comparison, hashing, truth, conversion (``__int__``,
``__float__``, ``__index__``), container (``__iter__``, ``__len__``, ``__contains__``, ``__getitem__``), string
(``__str__``, ``__repr__``, ``__format__``) and arithmetic methods all say "equal"/"close"; objects whose
``__class__`` claims ``int``/``float``/``str``/``list``/``dict``/``tuple``/``bool``; subclasses of
``int``/``float``/``str``/``list``/``dict``/``tuple``/``set`` that compare equal to anything; a program that
redefines or patches the builtins and helpers the tests use (``abs``, ``isinstance``, ``all``, ``sorted``,
``len``, ``math.isclose``, ``random``); and, against the judge's own process, killing or stopping it and
writing forged reports through ``/proc/<judge>/fd/1`` or reading it through ``/proc/<judge>/mem``. Every
verdict must be a failure (0 forged), and every gold solution must pass.
"""

from __future__ import annotations

import json

import pytest

from agentloop.registry import make
from agentloop.sandbox.local import bwrap_status

from .test_verifier_integrity import FORGE, TRICKS

pytestmark = pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")

# Every dunder a test could apply to a returned value, answering "equal", "true", "close" or "zero".
_DUNDERS = '''
    def __eq__(self, o): return True
    def __ne__(self, o): return False
    def __lt__(self, o): return True
    __le__ = __gt__ = __ge__ = __lt__
    def __hash__(self): return 0
    def __bool__(self): return True
    def __int__(self): return 0
    def __float__(self): return 0.0
    def __index__(self): return 0
    def __complex__(self): return 0j
    def __len__(self): return 0
    def __iter__(self): return iter(())
    def __contains__(self, x): return True
    def __getitem__(self, k): return self
    def __str__(self): return ""
    def __repr__(self): return ""
    def __format__(self, spec): return ""
    def __abs__(self): return self
    def __neg__(self): return self
    def __pos__(self): return self
    def __round__(self, n=None): return self
    def __add__(self, o): return self
    __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __floordiv__ = __add__
    __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = __and__ = __or__ = __xor__ = __add__
'''


def _lying(t: str) -> str:
    return f"class _F:\n    __class__ = property(lambda self: {t})\n{_DUNDERS}\ndef _make():\n    return _F()\n"


def _subclass(t: str, arg: str) -> str:
    return (f"class _F({t}):\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
            f"    __hash__ = {t}.__hash__\n    def __len__(self): return 0\n    def __iter__(self): return iter(())\n"
            f"def _make():\n    return _F({arg})\n")


# Programs defining ``_make()``: the object the wrong solution returns, whatever its arguments.
OBJECTS = {
    "always_equal": "class _F:\n    def __eq__(self, o): return True\n    __hash__ = None\ndef _make():\n    return _F()\n",
    "every_dunder": f"class _F:\n{_DUNDERS}\ndef _make():\n    return _F()\n",
    **{f"class_claims_{t}": _lying(t) for t in ("int", "float", "str", "list", "dict", "tuple", "bool")},
    **{f"subclass_of_{t}": _subclass(t, a) for t, a in (("int", "0"), ("float", "0.0"), ("str", "''"),
                                                        ("list", "()"), ("dict", ""), ("tuple", "()"),
                                                        ("set", "()"))},
    "nested_in_a_list": f"class _F:\n{_DUNDERS}\ndef _make():\n    return [_F(), _F()]\n",
    "type_subclass_metaclass": ("class _M(type):\n    def __instancecheck__(cls, o): return True\n"
                                f"class _F(metaclass=_M):\n{_DUNDERS}\ndef _make():\n    return _F()\n"),
}

# Appended to a solution that is merely wrong: they change what the test's own helpers do.
SHADOWS = {
    "def_abs": "def abs(x):\n    return 0\n",
    "def_isinstance": "def isinstance(*a):\n    return True\n",
    "def_all": "def all(*a, **k):\n    return True\n",
    "def_sorted_len": "def sorted(x, **k):\n    return list(x)\ndef len(x):\n    return 3\n",
    "builtins_patched": ("import builtins, math\nbuiltins.abs = lambda x: 0\nbuiltins.all = lambda *a: True\n"
                         "builtins.isinstance = lambda *a: True\nmath.isclose = lambda *a, **k: True\n"),
    "random_patched": "import random\nrandom.randint = lambda a, b: 0\nrandom.random = lambda: 0.0\n",
    "helpers_redefined": ("def encode(s):\n    return s\ndef _close(a, b):\n    return True\n"
                          "def close(a, b):\n    return True\n"),
}

# Against the judge's process (the tests' own process, when the tests are not plain asserts).
_JUDGE_PROC = FORGE + '''
import os, signal
def _attack():
    lines = "".join(m + " " + json.dumps(["h", i, "ok"]) + "\\n" + m + " " + json.dumps(["h", i, "v", True]) + "\\n"
                    for m in _markers() for i in range(40))
    for target in ("/proc/%d/fd/1" % os.getppid(), "/proc/%d/fd/2" % os.getppid()):
        try:
            with open(target, "w") as f:
                f.write(lines)
        except OSError:
            pass
    try:
        with open("/proc/%d/mem" % os.getppid(), "rb") as f:
            f.read(16)
    except OSError:
        pass
    _forge()
'''
JUDGE_ATTACKS = {
    "forge_through_proc_fd": _JUDGE_PROC + "_attack()\n",
    "forge_at_every_call": _JUDGE_PROC + "_W = {wrong}\ndef {f}(*a, **k):\n    _attack()\n    return _W(*a, **k)\n",
    "kill_the_judge": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "kill_the_process_group": "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
}


STOP_THE_JUDGE = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n"  # (a timeout: tried once below)


def attacks(f: str, wrong: str) -> dict[str, str]:
    """Every trick as a whole program, for a task whose entry point is ``f`` and a wrong solution ``wrong``."""
    out = {f"returns_{name}": f"{code}\ndef {f}(*a, **k):\n    return _make()\n" for name, code in OBJECTS.items()}
    out.update({f"shadow_{name}": wrong + "\n" + code for name, code in SHADOWS.items()})
    out.update({f"process_{name}": wrong + "\n" + code for name, code in TRICKS.items()
                if name not in ("always_equal_result", "always_equal_object")})
    wrong_name = "_wrong_" + f
    renamed = wrong.replace(f"def {f}(", f"def {wrong_name}(")
    out.update({f"judge_{name}": wrong + "\n" + renamed + "\n" + code.format(f=f, wrong=wrong_name)
                for name, code in JUDGE_ATTACKS.items()})
    return out


def _check(env, task, wrong: str, f: str) -> list[str]:
    """The tricks that forged a verdict (must be none); the gold reply must pass first."""
    forged = []
    for name, program in attacks(f, wrong).items():
        verdict = env.verify(task, f"```python\n{program}\n```")
        if verdict.success or verdict.reward:
            forged.append(name)
    return forged


# -- code/tasks-v0: every test shape ---------------------------------------------------------------------------------
ADD = "def add(a, b):\n    return a + b\n"
ADD_WRONG = "def add(a, b):\n    return a - b + (a == 0.1)\n"
SHAPES = {
    "plain_asserts": {"tests": ["assert add(1, 2) == 3", "assert add(-1, -1) == -2"]},
    "loop": {"tests": ["for a, b, c in [(1, 2, 3), (2, 2, 4)]:\n    assert add(a, b) == c"]},
    "locals": {"tests": ["r = add(2, 3)\nassert r == 5", "assert add(0, 0) == 0"]},
    "comprehension": {"tests": ["assert all(add(a, 1) == a + 1 for a in range(5))"]},
    "lambda": {"tests": ["assert (lambda v: v == 7)(add(3, 4))"]},
    "test_helper_in_setup": {"setup": "def close(a, b):\n    return abs(a - b) < 1e-9",
                             "tests": ["assert close(add(0.1, 0.2), 0.3)", "assert close(add(2, 2), 4)"]},
    "seeded_random": {"tests": ["import random\nrandom.seed(0)\nfor _ in range(20):\n"
                                "    a, b = random.randint(1, 9), random.randint(1, 9)\n    assert add(a, b) == a + b"]},
    "tolerance": {"tests": ["assert abs(add(0.1, 0.2) - 0.3) < 1e-9", "assert abs(add(1, 1) - 2) < 1e-9"]},
    "isinstance": {"tests": ["assert isinstance(add(1, 2), int) and add(1, 2) == 3"]},
    "indexing_and_len": {"tests": ["assert [add(1, 2)][0] == 3 and len(str(add(10, 5))) == 2"]},
    "statement_not_assert": {"tests": ["if add(2, 2) != 4:\n    raise ValueError('wrong')"]},
    "isclose_host_side": {"tests": ["import math\nassert math.isclose(add(0.5, 0.25), 0.75)",
                                    "assert math.isclose(add(1, 2), 3)"]},
}


@pytest.fixture(scope="module")
def tasks_env(tmp_path_factory):
    path = tmp_path_factory.mktemp("tasks") / "tasks.jsonl"
    rows = [{"id": k, "prompt": "Write add(a, b).", "reference": ADD, **v} for k, v in SHAPES.items()]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    e = make("code/tasks-v0", path=str(path), timeout_s=3.0)
    yield e.unwrapped
    e.close()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_tasks_v0_every_shape_zero_forged(tasks_env, shape):
    task = next(t for t in (tasks_env.get_task(i) for i in range(tasks_env.num_tasks())) if t.id == shape)
    assert tasks_env.verify(task, f"```python\n{ADD}\n```").success
    assert not tasks_env.verify(task, f"```python\n{ADD_WRONG}\n```").success
    assert _check(tasks_env, task, ADD_WRONG, "add") == []


def test_stopping_the_judge_is_a_timeout_not_a_pass(tasks_env):
    task = next(t for t in (tasks_env.get_task(i) for i in range(tasks_env.num_tasks())) if t.id == "loop")
    verdict = tasks_env.verify(task, f"```python\n{ADD}\n{STOP_THE_JUDGE}\n```")
    assert not verdict.success and verdict.info["stage"] in ("timeout", "crash", "load"), verdict.info


# -- code/mbpp-v0 ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mbpp_env():
    e = make("code/mbpp-v0", split="test", timeout_s=3.0)
    yield e.unwrapped
    e.close()


@pytest.mark.parametrize(("index", "f", "wrong"), [
    (0, "remove_Occ", "def remove_Occ(s, ch):\n    return s\n"),
    # task 367: setup code builds trees from the solution's own Node class
    (356, "is_tree_balanced", "class Node:\n    def __init__(self, data):\n        self.data = data\n"
                              "        self.left = self.right = None\ndef is_tree_balanced(root):\n    return True\n"),
])
def test_mbpp_v0_zero_forged(mbpp_env, index, f, wrong):
    task = mbpp_env.get_task(index)
    assert f in task.answer["tests"][0]
    assert mbpp_env.verify(task, f"```python\n{task.answer['reference']}\n```").success
    assert _check(mbpp_env, task, wrong, f) == []


# -- code/humaneval-format-v0 and code/mbpp-format-v0, with EvalPlus inputs ------------------------------------------
HE_TASKS = [
    {"task_id": "A/loop_locals", "entry_point": "halve",
     "prompt": "def halve(x: float) -> float:\n    \"\"\"x / 2\"\"\"\n", "canonical_solution": "    return x / 2\n",
     "test": "def check(candidate):\n    cases = [(1, 0.5), (3, 1.5), (-2, -1.0)]\n    for x, y in cases:\n"
             "        got = candidate(x)\n        assert abs(got - y) < 1e-6\n",
     "wrong": "def halve(x):\n    return x / 3\n",
     "base_input": [[4]], "plus_input": [[10], [7]], "atol": 1e-6},
    {"task_id": "A/encode_decode", "entry_point": "decode",
     "prompt": "def encode(s: str) -> str:\n    return ''.join(chr(ord(c) + 1) for c in s)\n\n\n"
               "def decode(s: str) -> str:\n    \"\"\"Undo encode.\"\"\"\n",
     "canonical_solution": "    return ''.join(chr(ord(c) - 1) for c in s)\n",
     "test": "import random\nimport string\n\ndef check(candidate):\n    random.seed(1)\n    for _ in range(30):\n"
             "        s = ''.join(random.choice(string.ascii_letters) for _ in range(random.randint(1, 12)))\n"
             "        assert candidate(encode(s)) == s\n",
     "wrong": "def decode(s):\n    return s\n"},
    {"task_id": "A/comprehension_lambda", "entry_point": "evens",
     "prompt": "def evens(n: int) -> list:\n    \"\"\"The even numbers below n.\"\"\"\n",
     "canonical_solution": "    return [i for i in range(n) if i % 2 == 0]\n",
     "test": "METADATA = {}\n\ndef _close(a, b):\n    return a == b\n\ndef check(candidate):\n"
             "    assert all(_close(candidate(n), list(range(0, n, 2))) for n in range(8))\n"
             "    ok = lambda v: sorted(v) == v and len(v) == 3\n    assert ok(candidate(6))\n"
             "    assert isinstance(candidate(3), list)\n",
     "wrong": "def evens(n):\n    return [i for i in range(n + 1) if i % 2 == 0]\n",
     "plus_input": [[9], [1]], "atol": 0},
    {"task_id": "A/plain_asserts", "entry_point": "triple",
     "prompt": "def triple(x: int) -> int:\n    \"\"\"3x\"\"\"\n", "canonical_solution": "    return 3 * x\n",
     "test": "def check(candidate):\n    assert candidate(1) == 3\n    assert candidate(0) == 0\n",
     "wrong": "def triple(x):\n    return x + 2\n", "base_input": [[5]], "plus_input": [[-4]], "atol": 0},
]
MBPP_TASKS = [
    {"task_id": 1, "text": "Write add(a, b).", "code": ADD, "entry_point": "add", "wrong": ADD_WRONG,
     "test_list": ["assert add(1, 2) == 3", "assert abs(add(0.1, 0.2) - 0.3) < 1e-9"], "test_setup_code": "",
     "challenge_test_list": ["assert all(add(a, a) == 2 * a for a in range(4))"],
     "base_input": [[1, 1]], "plus_input": [[2.5, 0.5], [-3, 3]], "atol": 1e-9},
    {"task_id": 2, "text": "rect_area(r) of a Rect with w and h.", "entry_point": "rect_area",
     "code": "class Rect:\n    def __init__(self, w, h):\n        self.w, self.h = w, h\n\n\ndef rect_area(r):\n"
             "    return r.w * r.h\n",
     "wrong": "class Rect:\n    def __init__(self, w, h):\n        self.w, self.h = w, h\n\n\ndef rect_area(r):\n"
              "    return r.w + r.h\n",
     "test_list": ["assert rect_area(r) == 6", "assert rect_area(Rect(1, 5)) == 5"], "test_setup_code": "r = Rect(2, 3)"},
]


@pytest.fixture(scope="module")
def format_envs(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    (d / "he.jsonl").write_text("\n".join(json.dumps({k: v for k, v in t.items() if k != "wrong"}) for t in HE_TASKS))
    (d / "mbpp.jsonl").write_text("\n".join(json.dumps({k: v for k, v in t.items() if k != "wrong"})
                                            for t in MBPP_TASKS))
    envs = {"humaneval": make("code/humaneval-format-v0", path=str(d / "he.jsonl"), timeout_s=3.0),
            "mbpp": make("code/mbpp-format-v0", path=str(d / "mbpp.jsonl"), timeout_s=3.0)}
    yield {k: e.unwrapped for k, e in envs.items()}
    for e in envs.values():
        e.close()


@pytest.mark.parametrize(("fmt", "index"), [("humaneval", i) for i in range(len(HE_TASKS))]
                         + [("mbpp", i) for i in range(len(MBPP_TASKS))])
def test_format_envs_and_evalplus_inputs_zero_forged(format_envs, fmt, index):
    env = format_envs[fmt]
    spec = (HE_TASKS if fmt == "humaneval" else MBPP_TASKS)[index]
    task = env.get_task(index)
    gold = env.verify(task, env.gold_reply(task))
    assert gold.success, gold.feedback
    wrong = env.verify(task, f"```python\n{spec['wrong']}\n```")
    assert not wrong.success
    assert _check(env, task, spec["wrong"], spec["entry_point"]) == []


# -- what is not covered (see environments/code/execution.py's docstring), one test each -------------------------------
@pytest.fixture(scope="module")
def sb():
    from agentloop.sandbox import get_sandbox

    sandbox = get_sandbox("local", workers=2)
    yield sandbox
    sandbox.close()


LOOP = ["for a, b in [(1, 2), (3, 4)]:\n    assert add(a, b) == a + b"]


def test_not_covered_hard_coding_answers_the_program_can_read(sb):
    from agentloop.environments.code.execution import run_tests

    # It knows the cases (they are in its memory, or in the prompt): right answers, not a forged verdict.
    table = "def add(a, b):\n    return {(1, 2): 3, (3, 4): 7}[(a, b)]\n"
    assert run_tests(table, LOOP, sb, program_names={"add"}).passed


def test_not_covered_shadowed_builtins_without_program_names(sb):
    from agentloop.environments.code.execution import run_tests

    tol = ["assert abs(add(0.1, 0.2) - 0.3) < 1e-9"]
    shadow = "def add(a, b):\n    return 0\ndef abs(x):\n    return 0\n"
    assert run_tests(shadow, tol, sb).passed  # no reference: every name the program binds is its own
    assert not run_tests(shadow, tol, sb, program_names={"add"}).passed  # with the reference's names: closed


def test_not_covered_values_that_cannot_cross_fail(sb):
    from agentloop.environments.code.execution import run_tests

    gen = "def add(a, b):\n    yield a + b\n"
    r = run_tests(gen, ["assert list(add(1, 2)) == [3]"], sb, program_names={"add"})
    assert not r.passed and "generator" in r.feedback
    cls = "class P:\n    def __init__(self, x):\n        self.x = x\n    def __eq__(self, o):\n        return self.x == o.x\n"
    r = run_tests(cls, ["assert P(1) == P(1)", "assert P(2).x == 2"], sb, program_names={"P"})
    assert [o.passed for o in r.outcomes] == [False, True]  # compared by the test: refused; attributes: read


def test_not_covered_only_top_level_argument_mutations_come_back(sb):
    from agentloop.environments.code.execution import run_tests

    sol = "def srt(l):\n    l.sort()\n    if l and isinstance(l[0], list):\n        l[0].append(9)\n"
    flat = "l = [3, 1, 2]\nsrt(l)\nassert l == [1, 2, 3]"
    inner = "x = [1]\nl = [x]\nsrt(l)\nassert l == [[1, 9]] and x == [1]"  # l is updated; x (its old item) is not
    r = run_tests(sol, [flat, inner], sb, program_names={"srt"})
    assert r.passed, r.feedback


def test_not_covered_the_tests_random_is_their_own(sb):
    from agentloop.environments.code.execution import run_tests

    test = ("import random\nrandom.seed(3)\nfirst = random.random()\nrandom.seed(3)\nadd(1, 2)\n"
            "assert random.random() == first")
    sol = "import random\ndef add(a, b):\n    random.random()\n    return a + b\n"  # in a plain run: a shifted draw
    assert run_tests(sol, [test], sb, program_names={"add"}).passed


def test_not_covered_host_values_only_in_call_holes(sb):
    from agentloop.environments.code.execution import run_tests

    ok = run_tests("def add(a, b):\n    return a + b\n", ["assert add(1, 2) == E", "assert all(add(1, i) == E for i in [2])"],
                   sb, host={"E": 3}, program_names={"add"})
    assert [o.passed for o in ok.outcomes] == [True, False]  # the second runs in the judge, which does not hold E
