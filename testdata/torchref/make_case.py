#!/usr/bin/python3
"""Writes a random tiny Llama test case for llama_ref.py / the Go tests.

DIR/model/{config.json,model.safetensors}
DIR/adapter/{adapter_config.json,adapter_model.safetensors}  (unless --no-adapter)
DIR/batch.json
See README.md.
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import save_safetensors  # noqa: E402

torch.set_default_dtype(torch.float32)
torch.set_num_threads(1)

_MLP = ("gate_proj", "up_proj", "down_proj")
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")


def add_family(a, cfg, w, normal, d):
    """The family's config fields and extra tensors (HF names)."""
    fam = a.family
    cfg["model_type"] = "gemma3_text" if fam == "gemma3" else fam
    cfg["architectures"] = [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                             "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                             "gemma3": "Gemma3ForCausalLM"}[fam]]
    if a.attention_bias:
        cfg["attention_bias"] = True
    if a.rope_scaling:
        cfg["rope_scaling"] = json.loads(a.rope_scaling)
    if a.sliding_window is not None:
        cfg["sliding_window"] = a.sliding_window
    H = a.hidden
    qkv_bias = fam == "qwen2" or (a.attention_bias and fam != "mistral")
    o_bias = a.attention_bias and fam not in ("qwen2", "mistral")
    for i in range(a.layers):
        pre = "model.layers.%d." % i
        if qkv_bias:
            w[pre + "self_attn.q_proj.bias"] = normal((a.heads * d,), 0.2)
            w[pre + "self_attn.k_proj.bias"] = normal((a.kv_heads * d,), 0.2)
            w[pre + "self_attn.v_proj.bias"] = normal((a.kv_heads * d,), 0.2)
        if o_bias:
            w[pre + "self_attn.o_proj.bias"] = normal((H,), 0.2)
        if fam in ("qwen3", "gemma3"):
            off = 0 if fam == "gemma3" else 1
            w[pre + "self_attn.q_norm.weight"] = off + normal((d,), 0.1)
            w[pre + "self_attn.k_norm.weight"] = off + normal((d,), 0.1)
    if fam == "gemma3":
        # Gemma's norms scale by (1 + w): centre their weights on 0
        for n in list(w):
            if n.endswith("layernorm.weight") or n == "model.norm.weight":
                w[n] = w[n] - 1
        for i in range(a.layers):
            pre = "model.layers.%d." % i
            w[pre + "pre_feedforward_layernorm.weight"] = normal((H,), 0.1)
            w[pre + "post_feedforward_layernorm.weight"] = normal((H,), 0.1)
        del cfg["hidden_act"]
        cfg["hidden_activation"] = "gelu_pytorch_tanh"
        cfg["head_dim"] = d
        cfg["query_pre_attn_scalar"] = a.query_pre_attn_scalar or d
        cfg["rope_local_base_freq"] = 10000.0
        cfg["sliding_window_pattern"] = a.sliding_window_pattern or 2
        cfg["final_logit_softcapping"] = None
        cfg["attn_logit_softcapping"] = None
        cfg.setdefault("sliding_window", 4096)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--inter", type=int, default=48)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=None,
                    help="written to config.json only when given (default hidden/heads)")
    ap.add_argument("--theta", type=float, default=10000.0)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--max-pos", type=int, default=128)
    tie = ap.add_mutually_exclusive_group()
    tie.add_argument("--tied", dest="tied", action="store_true")
    tie.add_argument("--untied", dest="tied", action="store_false")
    ap.set_defaults(tied=False)
    ap.add_argument("--dtype", choices=("F32", "BF16", "F16"), default="F32",
                    help="storage dtype of model.safetensors (adapter is always F32)")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8)
    ap.add_argument("--rslora", action="store_true")
    ap.add_argument("--targets", default="q_proj,v_proj")
    ap.add_argument("--no-adapter", action="store_true")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=8)
    ap.add_argument("--family", choices=("llama", "mistral", "qwen2", "qwen3", "gemma3"), default="llama",
                    help="model_type and the family's extra tensors (gemma3 writes gemma3_text)")
    ap.add_argument("--attention-bias", action="store_true", help="attention_bias: true")
    ap.add_argument("--rope-scaling", default=None, help="rope_scaling as JSON")
    ap.add_argument("--sliding-window", type=int, default=None)
    ap.add_argument("--query-pre-attn-scalar", type=float, default=None)
    ap.add_argument("--sliding-window-pattern", type=int, default=None)
    a = ap.parse_args()

    assert a.heads % a.kv_heads == 0, "heads must be a multiple of kv-heads"
    d = a.head_dim if a.head_dim else a.hidden // a.heads
    assert d % 2 == 0, "head_dim must be even"
    assert a.seq <= a.max_pos or "dynamic" in (a.rope_scaling or ""), "seq beyond max_pos needs dynamic rope_scaling"
    g = torch.Generator().manual_seed(a.seed)

    def normal(shape, std):
        return std * torch.randn(shape, generator=g)

    H, I, V = a.hidden, a.inter, a.vocab
    shapes = {"q_proj": (a.heads * d, H), "k_proj": (a.kv_heads * d, H),
              "v_proj": (a.kv_heads * d, H), "o_proj": (H, a.heads * d),
              "gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I)}
    # embeddings at 0.2 like lm_head: with tied weights a larger scale makes the
    # logit of the current token dominate (loss ~2·log V instead of ~log V)
    w = {"model.embed_tokens.weight": normal((V, H), 0.2)}
    for i in range(a.layers):
        pre = "model.layers.%d." % i
        w[pre + "input_layernorm.weight"] = 1 + normal((H,), 0.1)
        for m in _ATTN:
            w[pre + "self_attn.%s.weight" % m] = normal(shapes[m], 0.2)
        w[pre + "post_attention_layernorm.weight"] = 1 + normal((H,), 0.1)
        for m in _MLP:
            w[pre + "mlp.%s.weight" % m] = normal(shapes[m], 0.2)
    w["model.norm.weight"] = 1 + normal((H,), 0.1)
    if not a.tied:
        w["lm_head.weight"] = normal((V, H), 0.2)

    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "vocab_size": V,
        "hidden_size": H,
        "intermediate_size": I,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "max_position_embeddings": a.max_pos,
        "rms_norm_eps": a.eps,
        "rope_theta": a.theta,
        "tie_word_embeddings": a.tied,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[a.dtype],
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if a.head_dim:
        cfg["head_dim"] = a.head_dim
    add_family(a, cfg, w, normal, d)

    mdir = os.path.join(a.out, "model")
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_safetensors(os.path.join(mdir, "model.safetensors"), w, a.dtype, {"format": "pt"})

    if not a.no_adapter:
        targets = [t.strip() for t in a.targets.split(",") if t.strip()]
        for t in targets:
            if t not in shapes:
                raise SystemExit("unknown target module %s" % t)
        lw = {}
        for i in range(a.layers):
            for t in targets:
                sub = "self_attn" if t in _ATTN else "mlp"
                key = "base_model.model.model.layers.%d.%s.%s" % (i, sub, t)
                out_f, in_f = shapes[t]
                bound = 1.0 / math.sqrt(in_f)
                lw[key + ".lora_A.weight"] = (torch.rand((a.rank, in_f), generator=g) * 2 - 1) * bound
                # non-zero B (test fixture) so that A's gradient is non-zero
                lw[key + ".lora_B.weight"] = normal((out_f, a.rank), 0.1)
        acfg = {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": a.rank,
            "lora_alpha": int(a.alpha) if float(a.alpha).is_integer() else a.alpha,
            "lora_dropout": 0.0,
            "target_modules": targets,
            "use_rslora": bool(a.rslora),
            "bias": "none",
            "fan_in_fan_out": False,
            "inference_mode": False,
            "base_model_name_or_path": "../model",
        }
        adir = os.path.join(a.out, "adapter")
        os.makedirs(adir, exist_ok=True)
        with open(os.path.join(adir, "adapter_config.json"), "w") as f:
            json.dump(acfg, f, indent=2)
        save_safetensors(os.path.join(adir, "adapter_model.safetensors"), lw, "F32", {"format": "pt"})

    inputs = torch.randint(0, V, (a.batch, a.seq), generator=g)
    # targets: next token where available, random at the end; ~1/8 ignored
    targets = torch.cat((inputs[:, 1:], torch.randint(0, V, (a.batch, 1), generator=g)), dim=1)
    ign = torch.rand((a.batch, a.seq), generator=g) < 0.125
    ign[:, 0] = False  # at least one counted target per row
    targets = torch.where(ign, torch.full_like(targets, -1), targets)
    with open(os.path.join(a.out, "batch.json"), "w") as f:
        json.dump({"inputs": inputs.tolist(), "targets": targets.tolist()}, f)


if __name__ == "__main__":
    main()
