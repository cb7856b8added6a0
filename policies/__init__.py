"""Built-in policies, registered through the ``agentloop.policies`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Callable


def register(register: Callable[..., object]) -> None:
    register("scripted", "agentloop.policies.scripted:ScriptedPolicy",
             description="Replies from a script (list by turn, dict by prompt, or a function); tests and demos.")
    register("hf", "agentloop.policies.hf:HFPolicy",
             description="transformers causal LM (the embedded default model when no model is named); LoRA via peft.")
    register("static", "agentloop.policies.static:StaticPolicy",
             description="hf's weights decoded by our own loop: static KV cache, continuous batching, no generate(); "
             "Llama-family models; >= 2x hf at batch 64 on CPU (benchmarks/generation.py).")
    register("openai", "agentloop.policies.openai_compat:OpenAIPolicy",
             description="Any OpenAI-compatible server (agentloop serve, vLLM, llama.cpp, hosted APIs).")
    register("ct2", "agentloop.policies.ct2:CT2Policy",
             description="CTranslate2 (int8/float32, CPU); not faster than hf on an AMX CPU (docs/performance.md); needs agentloop[ct2].")
    register("llamacpp", "agentloop.policies.llamacpp:LlamaCppPolicy",
             description="llama.cpp on a GGUF model (the default model's own Q4_1 file), batched, CPU; LoRA adapters "
             "without reload; needs agentloop[llamacpp].")
    register("vllm", "agentloop.policies.vllm:VLLMPolicy",
             description="In-process vLLM engine (GPU); one LoRARequest per adapter; needs agentloop[vllm].")
