#!/usr/bin/python3
"""Independent plain-PyTorch reference for the model families lens builds
(+ PEFT LoRA), written from transformers' modeling_llama.py,
modeling_mistral.py, modeling_qwen2.py, modeling_qwen3.py, modeling_gemma3.py
(Gemma3ForCausalLM, text only) and modeling_rope_utils.py.

    family_ref.py --model DIR --batch batch.json [--adapter DIR | --full] --out ref.safetensors

Output as llama_ref.py: loss [1], logits [B,T,V], and d loss / d every
adapter tensor (or every weight with --full). Only torch + numpy.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import ce_loss, load_safetensors, parse_adapter, save_safetensors  # noqa: E402

torch.set_default_dtype(torch.float32)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")


class Cfg:
    """config.json with each family's HF config-class defaults."""

    def __init__(self, d):
        self.family = d.get("model_type", "llama")
        if self.family not in FAMILIES:
            raise ValueError("model_type %r not supported" % self.family)
        gemma = self.family == "gemma3_text"
        self.gemma = gemma
        self.vocab = int(d["vocab_size"])
        self.hidden = int(d["hidden_size"])
        self.inter = int(d["intermediate_size"])
        self.layers = int(d["num_hidden_layers"])
        self.heads = int(d["num_attention_heads"])
        self.kv_heads = int(d.get("num_key_value_heads") or self.heads)
        self.max_pos = int(d.get("max_position_embeddings", 2048))
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        self.theta = float(d.get("rope_theta") or (1e6 if gemma else 10000.0))
        self.tied = bool(d.get("tie_word_embeddings", gemma))
        hd = d.get("head_dim")
        default_hd = {"qwen3": 128, "gemma3_text": 256}.get(self.family, self.hidden // self.heads)
        self.head_dim = int(hd) if hd is not None else default_hd
        self.rope_scaling = d.get("rope_scaling")
        bias = bool(d.get("attention_bias", False))
        # Qwen2: q/k/v always biased, o never; Mistral: no biases; the rest
        # put attention_bias on q, k, v and o.
        self.qkv_bias = self.family == "qwen2" or (bias and self.family != "mistral")
        self.o_bias = bias and self.family not in ("qwen2", "mistral")
        self.qk_norm = self.family in ("qwen3", "gemma3_text")
        if gemma:
            act = d.get("hidden_activation", "gelu_pytorch_tanh")
            assert act == "gelu_pytorch_tanh", act
            self.scaling = float(d.get("query_pre_attn_scalar", 256)) ** -0.5
            self.local_theta = float(d.get("rope_local_base_freq", 10000.0))
            sw = d.get("sliding_window", 4096)
            pattern = int(d.get("sliding_window_pattern", 6))
            lt = d.get("layer_types") or [
                "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(self.layers)]
            self.windows = [sw if t == "sliding_attention" else None for t in lt]
            assert d.get("attn_logit_softcapping") is None and d.get("final_logit_softcapping") is None
        else:
            assert d.get("hidden_act", "silu") == "silu"
            self.scaling = self.head_dim ** -0.5
            sw = d.get("sliding_window", 4096) if self.family == "mistral" else None
            self.windows = [sw] * self.layers


# ---- RoPE (modeling_rope_utils) ----

def inv_freq_default(theta, d):
    return 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))


def inv_freq_for(cfg, T, theta, scaling):
    d = cfg.head_dim
    if not scaling:
        return inv_freq_default(theta, d)
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = scaling.get("factor")
    if kind == "linear":
        return inv_freq_default(theta, d) / factor
    if kind == "dynamic":
        # _compute_dynamic_ntk_parameters with seq_len = max(position_ids) + 1
        # (the dynamic_rope_update path), which is T here.
        seq_len = torch.tensor(T, dtype=torch.int64)
        seq_len = torch.maximum(seq_len, torch.tensor(cfg.max_pos, dtype=torch.int64))
        base = theta * ((factor * seq_len / cfg.max_pos) - (factor - 1)) ** (d / (d - 2))
        return 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    if kind == "llama3":
        inv_freq = inv_freq_default(theta, d)
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv_freq
        inv_l = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, inv_l)
    raise ValueError("rope_scaling %r" % kind)


def cos_sin(inv_freq, T):
    pos = torch.arange(T, dtype=torch.int64).float()
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(x, cs):
    c, s = cs
    return x * c[None, :, None, :] + rotate_half(x) * s[None, :, None, :]


# ---- norms ----

def rms(x, w, eps):  # LlamaRMSNorm / Qwen2RMSNorm / Qwen3RMSNorm
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def gemma_rms(x, w, eps):  # Gemma3RMSNorm: (1 + w)
    return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)) * (1.0 + w)


class Model:
    def __init__(self, cfg, p, lora, scale):
        self.c, self.p, self.lora, self.scale = cfg, p, lora or {}, scale

    def norm(self, x, name):
        f = gemma_rms if self.c.gemma else rms
        return f(x, self.p[name], self.c.eps)

    def linear(self, x, name):
        # PEFT lora.Linear: base layer (with its bias) + scale·B(A(x))
        y = x @ self.p[name + ".weight"].t()
        if name + ".bias" in self.p:
            y = y + self.p[name + ".bias"]
        ab = self.lora.get(name)
        if ab is not None:
            y = y + self.scale * ((x @ ab["A"][1].t()) @ ab["B"][1].t())
        return y

    def attention(self, x, i, cs):
        c = self.c
        B, T, _ = x.shape
        d, nh, nkv = c.head_dim, c.heads, c.kv_heads
        pre = "model.layers.%d.self_attn." % i
        q = self.linear(x, pre + "q_proj").view(B, T, nh, d)
        k = self.linear(x, pre + "k_proj").view(B, T, nkv, d)
        v = self.linear(x, pre + "v_proj").view(B, T, nkv, d)
        if c.qk_norm:
            q = self.norm(q, pre + "q_norm.weight")
            k = self.norm(k, pre + "k_norm.weight")
        q, k = rope(q, cs), rope(k, cs)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        rep = nh // nkv
        k = k[:, :, None].expand(B, nkv, rep, T, d).reshape(B, nh, T, d)  # repeat_kv
        v = v[:, :, None].expand(B, nkv, rep, T, d).reshape(B, nh, T, d)
        scores = (q @ k.transpose(2, 3)) * c.scaling
        qi = torch.arange(T)[:, None]
        ki = torch.arange(T)[None, :]
        masked = ki > qi
        w = c.windows[i]
        if w is not None:
            masked = masked | (ki <= qi - w)  # sliding window: kv > q - window
        scores = scores.masked_fill(masked, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        o = (probs @ v).transpose(1, 2).reshape(B, T, nh * d)
        return self.linear(o, pre + "o_proj")

    def mlp(self, x, i):
        pre = "model.layers.%d.mlp." % i
        g = self.linear(x, pre + "gate_proj")
        a = F.gelu(g, approximate="tanh") if self.c.gemma else F.silu(g)
        return self.linear(a * self.linear(x, pre + "up_proj"), pre + "down_proj")

    def logits(self, inputs):
        c, p = self.c, self.p
        emb = p["model.embed_tokens.weight"]
        h = emb[inputs]
        T = inputs.shape[1]
        if c.gemma:
            h = h * torch.tensor(c.hidden ** 0.5, dtype=h.dtype)
        glob = cos_sin(inv_freq_for(c, T, c.theta, c.rope_scaling), T)
        local = cos_sin(inv_freq_default(c.local_theta, c.head_dim), T) if c.gemma else glob
        for i in range(c.layers):
            pre = "model.layers.%d." % i
            cs = local if (c.gemma and c.windows[i] is not None) else glob
            if c.gemma:
                a = self.attention(self.norm(h, pre + "input_layernorm.weight"), i, cs)
                h = h + self.norm(a, pre + "post_attention_layernorm.weight")
                m = self.mlp(self.norm(h, pre + "pre_feedforward_layernorm.weight"), i)
                h = h + self.norm(m, pre + "post_feedforward_layernorm.weight")
            else:
                h = h + self.attention(self.norm(h, pre + "input_layernorm.weight"), i, cs)
                h = h + self.mlp(self.norm(h, pre + "post_attention_layernorm.weight"), i)
        h = self.norm(h, "model.norm.weight")
        head = emb if c.tied else p["lm_head.weight"]
        return h @ head.t()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--adapter")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = Cfg(json.load(f))
    p = {k: v.float().clone() for k, v in load_safetensors(os.path.join(a.model, "model.safetensors")).items()}
    if cfg.tied:
        p.pop("lm_head.weight", None)
    lora, scale, trainable = {}, 1.0, {}
    if a.adapter:
        with open(os.path.join(a.adapter, "adapter_config.json")) as f:
            acfg = json.load(f)
        at = {k: v.float().clone().requires_grad_(True)
              for k, v in load_safetensors(os.path.join(a.adapter, "adapter_model.safetensors")).items()}
        scale, lora = parse_adapter(acfg, at)
        for mod in lora:
            if mod + ".weight" not in p:
                raise SystemExit("adapter targets unknown module %s" % mod)
        trainable = at
    elif a.full:
        for k in p:
            p[k].requires_grad_(True)
        trainable = p
    with open(a.batch) as f:
        batch = json.load(f)
    inputs = torch.tensor(batch["inputs"], dtype=torch.int64)
    targets = torch.tensor(batch["targets"], dtype=torch.int64)
    logits = Model(cfg, p, lora, scale).logits(inputs)
    loss = ce_loss(logits, targets)
    out = {"loss": loss.detach().reshape(1), "logits": logits.detach()}
    if trainable:
        keys = sorted(trainable)
        grads = torch.autograd.grad(loss, [trainable[k] for k in keys], allow_unused=True)
        for k, g in zip(keys, grads):
            out[k] = g if g is not None else torch.zeros_like(trainable[k])
    save_safetensors(a.out, out, "F32", {"format": "pt"})


if __name__ == "__main__":
    main()
