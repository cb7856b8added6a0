"""Generation backends of the improve loop and how the trained weights reach them.

* :mod:`~agentloop.generation.model_copy`: ``GenerationModel``, a bf16 generation copy of the
  in-training model (LoRA merged layer by layer), released before each training phase and rebuilt
  after it; ``policy_for`` picks the decode loop over it (``hf`` or ``static``).
* :mod:`~agentloop.generation.adapters`: ``AdapterSync``, the trained LoRA adapter handed to a
  running engine (vllm, llamacpp, hf) without reloading its base model; ``AdapterSyncConfig`` (the
  ``generation.adapters`` config section) and ``engine_placement``.
* :mod:`~agentloop.generation.loop`: ``build_generation``, the one place an improve run builds its
  generation policy from the ``generation`` section, and ``LoopGeneration``, which refreshes it after
  each training phase.

Nothing is imported here, so reading a config (``generation.adapters``) imports no torch.
"""
