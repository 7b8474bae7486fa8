"""GPU runtime benchmark (for a session lent an H100/H200; finishes in a few minutes).

Random-weight models of realistic shapes (Qwen2.5-7B; a 32B-shaped model with fewer layers, stated
in the output), bf16:
  0. correctness on the device: fast path vs float64 reference on a tiny model; torch's SDPA
     kernels (flash / efficient attention with LSE) for partial attention vs the math path;
  1. decode tokens/s: plait runner vs transformers `generate`, batch 1 and 8 (7B shape);
  2. W streams over one shared prefix vs W independent sequences (step time), 1k/4k/16k;
  3. attention only, one layer: W streams over a shared 16k prefix (one read for all queries + LSE
     merge) vs torch SDPA decoding of ONE sequence of the same length (flash decoding baseline).
Writes JSON to --out (default $OUT/gpu_runtime.json) and prints a table + a JSON last line.
`--tiny` runs small shapes (works on CPU, for testing the script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, table  # noqa: E402

from plait.runtime.attention import partial_attention  # noqa: E402
from plait.runtime.config import ModelConfig  # noqa: E402
from plait.runtime.model import DecoderLM  # noqa: E402
from plait.runtime.runner import Runner, StreamInput  # noqa: E402
from plait.runtime.segments import KVStore  # noqa: E402
from plait.runtime.shapes import qwen25_7b, qwen25_32b, tiny  # noqa: E402


def _tiny_shape(*, layers: int | None = None, max_position: int = 32768) -> ModelConfig:
    return tiny(
        "qwen2", vocab=512, layers=layers or 2, heads=8, kv_heads=2, head_dim=16,
        intermediate=256, max_position=max_position, theta=1e6,
    )  # fmt: skip


SHAPES = {"qwen2.5-7b": qwen25_7b, "qwen2.5-32b": qwen25_32b, "tiny": _tiny_shape}


def config(shape: str, layers: int | None = None, max_position: int = 32768) -> ModelConfig:
    return SHAPES[shape](layers=layers or None, max_position=max_position)


def random_model(cfg: ModelConfig, dev: torch.device, dtype: torch.dtype) -> DecoderLM:
    return DecoderLM.random(cfg, device=dev, dtype=dtype)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, repeats=5, warmup=2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def correctness(dev: torch.device) -> dict:
    from tests.helpers.schedules import random_schedule
    from tests.helpers.tiny import tiny_model

    out = {}
    m = tiny_model("qwen3", seed=0).to(dev)
    fast = random_schedule(m, "fast", 0, True)
    ref = random_schedule(m, "reference", 0, True)
    out["fast_vs_reference_fp32_max_abs"] = max(
        (a - b).abs().max().item() for a, b in zip(fast, ref)
    )
    mb = tiny_model("qwen2", seed=1, head_dim=64).to(dev, torch.bfloat16)  # bf16: flash kernels
    fast = random_schedule(mb, "fast", 1, True)
    ref = random_schedule(mb, "reference", 1, True)
    out["fast_vs_reference_bf16_max_abs"] = max(
        (a - b).abs().max().item() for a, b in zip(fast, ref)
    )
    out["bf16_logit_scale"] = max(b.abs().max().item() for b in ref)
    g = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(5, 16, 128, generator=g).to(dev, torch.bfloat16)
    k = torch.randn(4, 300, 128, generator=g).to(dev, torch.bfloat16)
    v = torch.randn(4, 300, 128, generator=g).to(dev, torch.bfloat16)
    lim = torch.tensor([299, 150, 3, 0, 299], device=dev)
    for name, limit in (("full", None), ("masked", lim)):
        a, la = partial_attention(q, k, v, limit, "sdpa")
        b, lb = partial_attention(q, k, v, limit, "math")
        out[f"sdpa_vs_math_{name}_out"] = (a.float() - b.float()).abs().max().item()
        out[f"sdpa_vs_math_{name}_lse"] = (la - lb).abs().max().item()
    return out


def decode(cfg: ModelConfig, dev, dtype, batch: int, steps: int) -> dict:
    from transformers import AutoModelForCausalLM, Qwen2Config

    hf_cfg = Qwen2Config(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        vocab_size=cfg.vocab_size,
        max_position_embeddings=32768,
        rope_theta=1e6,
        tie_word_embeddings=False,
    )
    with torch.device(dev):
        hf = AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype).eval()
    model = DecoderLM.from_hf(hf)
    ids = torch.randint(0, min(1000, cfg.vocab_size), (batch, 32), device=dev)

    def plait_run(n):
        store = KVStore(model.config, dtype, dev, rope=model.rope)
        r = Runner(model, store)
        segs = [store.new_segment(40 + n) for _ in range(batch)]
        logits = r.step([StreamInput(ids[i].tolist(), [s], s) for i, s in enumerate(segs)])
        for _ in range(n):
            nxt = logits.argmax(-1).tolist()
            logits = r.step([StreamInput([t], [s], s) for t, s in zip(nxt, segs)])

    def hf_run(n):
        hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n + 1,
            min_new_tokens=n + 1,
            do_sample=False,
            pad_token_id=0,
        )

    res = {}
    with torch.inference_mode():
        for name, fn in (("plait", plait_run), ("hf", hf_run)):
            full = timed(lambda fn=fn: fn(steps), dev, repeats=3, warmup=1)
            base = timed(lambda fn=fn: fn(0), dev, repeats=3, warmup=1)
            res[name] = batch * steps / max(full - base, 1e-9)
    return {
        "batch": batch,
        "plait_tok_s": res["plait"],
        "hf_tok_s": res["hf"],
        "speedup": res["plait"] / res["hf"],
    }


def shared_prefix(model: DecoderLM, dev, dtype, W: int, context: int, steps: int) -> dict:
    cfg = model.config
    store = KVStore(cfg, dtype, dev, rope=model.rope)
    r = Runner(model, store)
    prefix = store.new_segment(context)
    with torch.inference_mode():
        r.prefill(
            prefix, torch.randint(0, min(1000, cfg.vocab_size), (context,)).tolist(), chunk=4096
        )
        own = [store.new_segment(steps + 8) for _ in range(W)]
        ind = KVStore(cfg, dtype, dev, rope=model.rope)
        ri = Runner(model, ind)
        copies = []
        for _ in range(W):
            s = ind.new_segment(context + steps + 8)
            s.k[:, :, :context] = prefix.k[:, :, :context]
            s.v[:, :, :context] = prefix.v[:, :, :context]
            s.length = context
            copies.append(s)
        ts = timed(
            lambda: r.step([StreamInput([7], [prefix, s], s) for s in own]),
            dev,
            repeats=steps,
            warmup=3,
        )
        ti = timed(
            lambda: ri.step([StreamInput([7], [s], s) for s in copies]),
            dev,
            repeats=steps,
            warmup=3,
        )
    del store, ind
    return {
        "W": W,
        "context": context,
        "shared_ms": ts * 1e3,
        "independent_ms": ti * 1e3,
        "ratio": ts / ti,
    }


def attention_only(cfg: ModelConfig, dev, dtype, W: int, context: int, own_len: int = 64) -> dict:
    """One layer's attention: plait's shared read + own segments + merge vs SDPA of one sequence."""
    from plait.runtime.attention import gather_index, merge_gathered

    Hq, Hkv, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    g = torch.Generator(device="cpu").manual_seed(0)
    K = torch.randn(Hkv, context, D, generator=g).to(dev, dtype)
    V = torch.randn(Hkv, context, D, generator=g).to(dev, dtype)
    own = [
        (
            torch.randn(Hkv, own_len, D, generator=g).to(dev, dtype),
            torch.randn(Hkv, own_len, D, generator=g).to(dev, dtype),
        )
        for _ in range(W)
    ]
    q = torch.randn(W, Hq, D, generator=g).to(dev, dtype)
    rows = torch.arange(W, device=dev)

    def plait_attn():
        o1, l1 = partial_attention(q, K, V, None)  # the shared prefix, read once for W queries
        outs, lses = [o1], [l1]
        for i, (k, v) in enumerate(own):
            o, lse = partial_attention(q[i : i + 1], k, v, None)
            outs.append(o)
            lses.append(lse)
        idx = torch.cat([rows] + [rows[i : i + 1] for i in range(W)])
        index, pad = gather_index(idx, W)
        return merge_gathered(torch.cat(outs), torch.cat(lses), index, pad, dtype)

    q1 = torch.randn(1, Hq, 1, D, generator=g).to(dev, dtype)
    K1 = torch.randn(1, Hkv, context + own_len, D, generator=g).to(dev, dtype)
    V1 = torch.randn_like(K1)

    def sdpa_one():
        return F.scaled_dot_product_attention(q1, K1, V1, enable_gqa=True)

    with torch.inference_mode():
        tp = timed(plait_attn, dev, repeats=50, warmup=10)
        ts = timed(sdpa_one, dev, repeats=50, warmup=10)
    return {
        "W": W,
        "context": context,
        "plait_us": tp * 1e6,
        "sdpa_one_seq_us": ts * 1e6,
        "overhead": tp / ts - 1.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tiny", action="store_true", help="small shapes (CPU test of the script)")
    ap.add_argument("--layers32", type=int, default=16, help="layers of the 32B-shaped model")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_runtime.json"))
    ap.add_argument("--skip-decode", action="store_true")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(0)
    result: dict = {"benchmark": "gpu_runtime", "machine": machine(), "device": str(dev)}
    t0 = time.time()

    def dump():
        result["elapsed_s"] = time.time() - t0
        Path(args.out).write_text(json.dumps(result, indent=2))

    result["correctness"] = correctness(dev)
    print("correctness", result["correctness"], flush=True)
    dump()
    shapes = (
        [("tiny", None)] if args.tiny else [("qwen2.5-7b", None), ("qwen2.5-32b", args.layers32)]
    )
    contexts = [256, 1024] if args.tiny else [1024, 4096, 16384]
    if not args.skip_decode:
        cfg = config(shapes[0][0])
        result["decode"] = [
            decode(cfg, dev, dtype, b, 8 if args.tiny else 32) | {"shape": shapes[0][0]}
            for b in (1, 8)
        ]
        print(
            table(result["decode"], ["shape", "batch", "plait_tok_s", "hf_tok_s", "speedup"]),
            flush=True,
        )
        dump()
    result["shared_prefix"], result["attention"] = [], []
    for shape, layers in shapes:
        cfg = config(shape, layers)
        model = random_model(cfg, dev, dtype)
        for ctx in contexts:
            for W in (2, 4):
                row = shared_prefix(model, dev, dtype, W, ctx, 10) | {
                    "shape": shape,
                    "layers": cfg.num_layers,
                }
                result["shared_prefix"].append(row)
                print(table([row], list(row)), flush=True)
                dump()
        for W in (2, 4):
            row = attention_only(cfg, dev, dtype, W, contexts[-1]) | {"shape": shape}
            result["attention"].append(row)
            print(table([row], list(row)), flush=True)
        dump()
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    dump()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
