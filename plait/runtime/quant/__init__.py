"""plait.runtime.quant: GGUF weights kept quantized (packed blocks, a linear and an embedding)."""
