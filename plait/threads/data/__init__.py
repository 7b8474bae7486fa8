"""ThreadWeaver data: trajectory records on disk, stage-1 data generation, synthetic tasks.

- `records`: JSON Lines trajectory records and the CLI's tokenizer lookup (`load_format`).
- `datagen`, `chat_turns`: a sequential trace -> the parallel format, through any
  OpenAI-compatible chat endpoint.
- `synthetic`: random trajectories on raw ids (packing and RL tests, benchmarks), the sums-of-products
  task of the SFT example, and a small random model for them (imports torch).

This `__init__` imports nothing, so reading records does not import torch.
"""
