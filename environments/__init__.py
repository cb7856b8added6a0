"""Built-in environments, registered through the ``agentloop.environments`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# Small example files for the format environments, used when no path= is given.
_HERE = Path(__file__).parent


def register(register: Callable[..., object]) -> None:
    # math and code (issue 4)
    register("math/gsm8k-v0", "agentloop.environments.math.gsm8k:GSM8KEnv", {"split": "test"},
             description="GSM8K word problems (split train|test), answers checked with math-verify.")
    register("math/arith-v0", "agentloop.environments.math.arith:ArithEnv", {"difficulty": 1},
             description="Seeded procedural arithmetic and word problems, difficulty 1-5.")
    register("code/mbpp-v0", "agentloop.environments.code.envs:MBPPEnv", {"split": "test"},
             description="MBPP (split prompt|test|validation|train), tests run in the sandbox; LeTI-style feedback.")
    register("code/tasks-v0", "agentloop.environments.code.envs:CodeTasksEnv",
             description="Code tasks from a JSONL file (path=; prompt, tests, optional setup), run in the sandbox.")
    # tools and travel (issue 5)
    register("tools/calc-math-v0", "agentloop.environments.tools.calc:CalcMathEnv", {"source": "math/arith-v0"},
             description="Math tasks with a calculator and a sandboxed Python tool (source: math/arith-v0 or math/gsm8k-v0).")
    register("tools/function-calling-v0", "agentloop.environments.tools.function_calling:FunctionCallingEnv",
             description="Expected-call tasks from a JSON file (default: 14 built-in); reward checks the calls.")
    register("travel/sole-planning-v0", "agentloop.environments.travel.sole:SolePlanningEnv",
             description="TravelPlanner sole-planning over the 45 training queries; the paper's evaluator.")
    register("travel/tool-use-v0", "agentloop.environments.travel.tooluse:TravelToolEnv",
             description="TravelPlanner two-stage mode: search tools over SQLite, then the plan.")
    register("travel/synthetic-v0", "agentloop.environments.travel.synthetic:SyntheticTravelEnv", {"level": "easy"},
             description="Procedurally generated travel queries over a seeded synthetic database (short|easy|medium|hard).")
    # standard benchmark formats (issue 14)
    register("code/humaneval-format-v0", "agentloop.environments.code.formats:HumanEvalFormatEnv",
             {"path": str(_HERE / "code" / "data" / "humaneval_example.jsonl")},
             description="HumanEval-format records (path=; prompt, test with check(candidate), entry_point), EvalPlus inputs.")
    register("code/mbpp-format-v0", "agentloop.environments.code.formats:MBPPFormatEnv",
             {"path": str(_HERE / "code" / "data" / "mbpp_example.jsonl")},
             description="MBPP-format records (path=; text, test_list, test_setup_code), MBPP+ inputs.")
    register("tools/bfcl-format-v0", "agentloop.environments.tools.bfcl:BFCLFormatEnv",
             {"path": str(_HERE / "tools" / "bfcl_example.jsonl")},
             description="BFCL function-calling records (path=, answer_path=), checked with BFCL's AST rules.")
    # learning cells for tool use (issue 23)
    register("tools/synthetic-calls-v0", "agentloop.environments.tools.synthetic_calls:SyntheticCallsEnv",
             {"level": "simple", "split": "train"},
             description="Procedural BFCL-format function calling (level simple|multiple|parallel|parallel_multiple|"
                         "mixed; split train|test: held-out functions), BFCL's AST checker.")
    register("math/qa-format-v0", "agentloop.environments.math.qa_format:QAFormatEnv",
             {"path": str(_HERE / "math" / "data" / "qa_example.jsonl")},
             description="Question/answer rows from JSONL/CSV/parquet/datasets folder (path=, question_field=, answer_field=).")
