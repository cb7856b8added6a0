"""Math environments (``math/gsm8k-v0``, ``math/arith-v0``) and the answer-checking helpers algorithms reuse."""

from agentloop.environments.math.checking import ANSWER_FORMAT, answers_match, extract_answer, judge

__all__ = ["ANSWER_FORMAT", "answers_match", "extract_answer", "judge"]
