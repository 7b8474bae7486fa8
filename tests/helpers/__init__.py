"""Plain helpers shared by several test packages (imported as `tests.helpers.<module>`):

- `tiny`: tiny random transformers models and their plait `DecoderLM` twins;
- `checkpoints`: tiny HF-format directories, GGUF files and fake bundled packages (loader tests);
- `toy`: a toy character tokenizer and tiny models over its vocabulary (Hogwild, eval);
- `threads`: random words and block structures, a vLLM-shaped stub handler (ThreadWeaver);
- `schedules`: random decode schedules over shared segments (runner backends, GPU benchmark);
- `serve`: the served model name, skips for missing bundled models, server metrics (serve tests);
- `engine`: greedy decoding with a bare runner loop, the engine's twin (engine, serve tests).
"""
