"""Code environments (``code/mbpp-v0``, ``code/tasks-v0``) and the helpers algorithms reuse.

``extract_code``, ``run_tests``, ``run_tests_many`` (execution.py) and ``run_task_tests`` (envs.py)
check model replies against tests in the sandbox; see those modules for details.
"""

from agentloop.environments.code.envs import (
    CODE_RETRY_INSTRUCTION,
    CodeTasksEnv,
    MBPPEnv,
    load_mbpp,
    load_task_file,
    run_task_tests,
)
from agentloop.environments.code.execution import TestReport, extract_code, run_tests, run_tests_many

__all__ = ["CODE_RETRY_INSTRUCTION", "CodeTasksEnv", "MBPPEnv", "TestReport", "extract_code", "load_mbpp",
           "load_task_file", "run_task_tests", "run_tests", "run_tests_many"]
