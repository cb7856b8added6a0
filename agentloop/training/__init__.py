"""Training: turn algorithm batches (:class:`TrainExample`) into parameter updates, full or LoRA, on CPU or GPU.

Heavy libraries (torch, transformers, peft) are imported by the submodules, never by ``import agentloop``.
"""

from agentloop.training.data import Segment, TrainExample, chat_example

__all__ = ["Segment", "TrainExample", "chat_example"]
