"""Training on ThreadWeaver trajectories: units, trie packing, the packed forward, SFT and RL.

- `units`: the (context, completion) units the orchestrator issues for a trajectory, with the loss
  mask (which completion tokens the model writes itself).
- `trie`: units -> a token trie flattened in DFS order (position = depth, Euler-tour times).
- `packing`: flattened tries -> fixed-length `PackedRow`s with the loss index.
- `mask`: the ancestor-only mask in its forms (parent walk, dense, FlexAttention, chunked).
- `context`: `TrieContext`, the packed-row attention context for plait's `DecoderLM`, and the
  packed log-probs / loss.
- `reference`: the per-unit twin (each unit alone, plain causal attention).
- `collate`: a DataLoader collator (trajectories in, batches of packed rows out).
- `sft`: a small AdamW SFT loop over packed rows.
- `reward`, `rl_loss`: the P-GRPO reward, group advantages and the broadcast policy-gradient loss.
- `sampler_gap`: trainer = sampler (the engine's exact log-prob bits as the loss's values, the
  packed forward's gradient) and the packed forward's distance to them.

`units`, `trie` and `reward` are torch-free; this `__init__` imports nothing so that they stay so.
"""
