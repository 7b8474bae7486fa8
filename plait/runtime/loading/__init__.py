"""plait.runtime.loading: from a model name or path to plait's `DecoderLM` and its tokenizer.

Modules, in dependency order:

- `errors`: the model-loading exceptions (each also a builtin: ValueError, FileNotFoundError...);
- `bundled`: the registry of models shipped as pip packages, located and sha256-verified;
- `gguf_file`, `weights`, `tokenizer`: GGUF reading and dequantisation, safetensors I/O, tokenizer
  files and chat prompts;
- `conversion`: GGUF -> safetensors cache entries, built once and reused while the source holds;
- `loader`: `load_model(name_or_path, dtype, device) -> LoadedModel`.

Converted models and assembled bundled files go to `plait.runtime.cache_dir` (one level up:
plait's kernels build there too). The public entry point is `plait.runtime.load_model` (lazy);
library code imports `plait.runtime.loading.loader`. Importing this package is cheap: nothing
below is imported until used.
"""
