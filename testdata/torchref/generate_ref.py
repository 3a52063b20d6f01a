#!/usr/bin/python3
"""Greedy decoding reference and decode benchmark for engine/generate.

Reference mode: greedy decoding with llama_ref.Model that recomputes the
whole prefix at every step (no cache), so it shares nothing with the Go
KV-cache code it checks.

    generate_ref.py --model DIR [--adapter DIR] --prompts prompts.json \
        --new N [--logit-steps K] --out out.json

prompts.json is a list of lists of token ids. out.json is
{"cases": [{"tokens": [N ids], "logits": [[V floats] for the first K steps]}]}.

Warper mode: transformers' TemperatureLogitsWarper, TopKLogitsWarper and
TopPLogitsWarper (as of transformers 4.4x, transcribed) applied in that
order to rows of logits; prints, for each row, the ids left and their
softmax probabilities.

    generate_ref.py --warp in.json --out out.json

in.json is a list of {"logits": [[V floats]], "temperature": T, "top_k": K,
"top_p": P}; out.json has, for each, {"rows": [{"ids": [...], "probs": [...]}]}.

Benchmark mode: a random model of the given shape (weights N(0, 0.02²),
norms 1, tied embeddings), greedy decoding with a key/value cache in eager
PyTorch (the same math as llama_ref.Model, attention as HF's eager path),
on --threads threads. Prints one JSON line with tokens_per_s = new tokens /
(prefill + decode time), and the decode-only rate.

    generate_ref.py --bench --hidden 576 --layers 30 --heads 9 --kv-heads 3 \
        --inter 1536 --vocab 49152 [--prompt-len 16 --new 128 --reps 3 --threads 2]
"""
import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import (Cfg, Model, apply_rope, load_safetensors, parse_adapter,  # noqa: E402
                       param_names, rms_norm, rope_cos_sin)


def load(model_dir, adapter_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = Cfg(json.load(f))
    raw = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    params = {n: raw[n].float() for n in param_names(cfg)}
    lora, scale = {}, 1.0
    if adapter_dir:
        with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
            acfg = json.load(f)
        at = load_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
        scale, lora = parse_adapter(acfg, {k: v.float() for k, v in at.items()})
    return Model(cfg, params, lora, scale)


def greedy_nocache(m, prompt, new, logit_steps):
    ids = list(prompt)
    out, logits = [], []
    with torch.no_grad():
        for step in range(new):
            lg = m.logits(torch.tensor([ids]))[0, -1]
            if step < logit_steps:
                logits.append(lg.tolist())
            tok = int(torch.argmax(lg))
            out.append(tok)
            ids.append(tok)
    return out, logits


def warp(scores, temperature, top_k, top_p):
    """HF's warpers on a [B, V] float32 tensor, in generate's order."""
    scores = scores / temperature
    if top_k > 0:
        top_k = min(top_k, scores.size(-1))
        remove = scores < torch.topk(scores, top_k)[0][..., -1, None]
        scores = scores.masked_fill(remove, -float("inf"))
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        sorted_remove = cumulative_probs <= (1 - top_p)
        sorted_remove[..., -1:] = 0  # min_tokens_to_keep = 1
        remove = sorted_remove.scatter(1, sorted_indices, sorted_remove)
        scores = scores.masked_fill(remove, -float("inf"))
    return scores


def warp_main(a):
    with open(a.warp) as f:
        cases = json.load(f)
    out = []
    for d in cases:
        scores = warp(torch.tensor(d["logits"], dtype=torch.float32), float(d["temperature"]),
                      int(d["top_k"]), float(d["top_p"]))
        probs = torch.softmax(scores, dim=-1)
        rows = []
        for r in range(scores.shape[0]):
            ids = torch.nonzero(torch.isfinite(scores[r]))[:, 0].tolist()
            rows.append({"ids": ids, "probs": [float(probs[r, i]) for i in ids]})
        out.append({"rows": rows})
    with open(a.out, "w") as f:
        json.dump(out, f)


class Cache:
    """Keys (after RoPE) and values per layer, [1, kv heads, capacity, d]."""

    def __init__(self, cfg, cap):
        shape = (1, cfg.kv_heads, cap, cfg.head_dim)
        self.k = [torch.zeros(shape) for _ in range(cfg.layers)]
        self.v = [torch.zeros(shape) for _ in range(cfg.layers)]
        self.n = 0
        self.cos, self.sin = rope_cos_sin(cap, cfg.head_dim, cfg.theta, torch.float32)


def forward_cached(m, ids, cache):
    """Logits after the last of ids, appending their keys/values to cache."""
    c, p = m.cfg, m.p
    T, p0 = len(ids), cache.n
    L = p0 + T
    d, nh, nkv = c.head_dim, c.heads, c.kv_heads
    emb = p["model.embed_tokens.weight"]
    h = emb[torch.tensor(ids)][None]
    cos, sin = cache.cos[p0:L], cache.sin[p0:L]
    qpos = torch.arange(p0, L)
    mask = torch.arange(L)[None, :] > qpos[:, None]
    for i in range(c.layers):
        pre = "model.layers.%d." % i
        x = rms_norm(h, p[pre + "input_layernorm.weight"], c.eps)
        a = pre + "self_attn."
        q = apply_rope(m.linear(x, a + "q_proj").view(1, T, nh, d), cos, sin)
        k = apply_rope(m.linear(x, a + "k_proj").view(1, T, nkv, d), cos, sin)
        v = m.linear(x, a + "v_proj").view(1, T, nkv, d)
        cache.k[i][:, :, p0:L] = k.transpose(1, 2)
        cache.v[i][:, :, p0:L] = v.transpose(1, 2)
        K = cache.k[i][:, :, :L].repeat_interleave(nh // nkv, dim=1)
        V = cache.v[i][:, :, :L].repeat_interleave(nh // nkv, dim=1)
        scores = (q.transpose(1, 2) @ K.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(mask, float("-inf"))
        o = (torch.softmax(scores, dim=-1) @ V).transpose(1, 2).reshape(1, T, nh * d)
        h = h + m.linear(o, a + "o_proj")
        h = h + m.mlp(rms_norm(h, p[pre + "post_attention_layernorm.weight"], c.eps), i)
    cache.n = L
    last = rms_norm(h[:, -1], p["model.norm.weight"], c.eps)
    if c.tied:
        return (last @ emb.t())[0]
    return m.linear(last, "lm_head")[0]


def greedy_cached(m, prompt, new):
    cache = Cache(m.cfg, len(prompt) + new)
    lg = forward_cached(m, list(prompt), cache)
    out = []
    for step in range(new):
        tok = int(torch.argmax(lg))
        out.append(tok)
        if step < new - 1:
            lg = forward_cached(m, [tok], cache)
    return out


def bench(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    H, I, V, d = a.hidden, a.inter, a.vocab, a.hidden // a.heads
    cfg = Cfg({"vocab_size": V, "hidden_size": H, "intermediate_size": I, "num_hidden_layers": a.layers,
               "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
               "max_position_embeddings": a.prompt_len + a.new, "rms_norm_eps": 1e-5, "tie_word_embeddings": True})
    shapes = {"q_proj": (a.heads * d, H), "k_proj": (a.kv_heads * d, H), "v_proj": (a.kv_heads * d, H),
              "o_proj": (H, a.heads * d), "gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I)}
    params = {}
    for n in param_names(cfg):
        if n.endswith("norm.weight"):
            params[n] = torch.ones(H)
        elif n == "model.embed_tokens.weight":
            params[n] = torch.randn(V, H) * 0.02
        else:
            params[n] = torch.randn(shapes[n.split(".")[-2]]) * 0.02
    m = Model(cfg, params)
    prompt = torch.randint(0, V, (a.prompt_len,)).tolist()
    with torch.inference_mode():
        # The cached loop must agree with recomputing the prefix.
        want, _ = greedy_nocache(m, prompt, 4, 0)
        got = greedy_cached(m, prompt, 4)
        if got != want:
            raise SystemExit("cached greedy %s != recomputed %s" % (got, want))
        greedy_cached(m, prompt, 8)  # warm-up
        best, best_dec = float("inf"), float("inf")
        for _ in range(a.reps):
            t0 = time.perf_counter()
            cache = Cache(cfg, a.prompt_len + a.new)
            lg = forward_cached(m, prompt, cache)
            t1 = time.perf_counter()
            for step in range(a.new):
                tok = int(torch.argmax(lg))
                if step < a.new - 1:
                    lg = forward_cached(m, [tok], cache)
            t2 = time.perf_counter()
            best, best_dec = min(best, t2 - t0), min(best_dec, t2 - t1)
    print(json.dumps({"tokens_per_s": a.new / best, "decode_tokens_per_s": (a.new - 1) / best_dec,
                      "seconds": best, "new_tokens": a.new, "prompt_len": a.prompt_len,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--adapter")
    ap.add_argument("--prompts")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--logit-steps", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--warp")
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--kv-heads", type=int)
    ap.add_argument("--inter", type=int)
    ap.add_argument("--vocab", type=int)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.bench:
        bench(a)
        return
    if a.warp:
        warp_main(a)
        return
    if not (a.model and a.prompts and a.out):
        ap.error("--model, --prompts and --out are required (or --bench)")
    torch.set_num_threads(1)
    m = load(a.model, a.adapter)
    with open(a.prompts) as f:
        prompts = json.load(f)
    cases = []
    for pr in prompts:
        toks, logits = greedy_nocache(m, pr, a.new, a.logit_steps)
        cases.append({"tokens": toks, "logits": logits})
    with open(a.out, "w") as f:
        json.dump({"cases": cases}, f)


if __name__ == "__main__":
    main()
