#!/usr/bin/python3
"""Independent plain-PyTorch reference for HF LlamaForCausalLM (+ PEFT LoRA).

Used by the Go tests as the numerical reference. See README.md for the CLI.
Only torch + numpy + the standard library are needed (no transformers/peft/
safetensors packages).
"""
import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)
# Single-threaded: the cases are tiny, and with 2+ threads this build's float32
# bmm costs milliseconds per call in thread hand-off.
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# ----------------------------------------------------------------------------
# safetensors (pure python)
# ----------------------------------------------------------------------------

_NP_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64,
          "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def load_safetensors(path):
    """Returns {name: float32 torch tensor} (F32/F16/BF16/F64 inputs)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt, shape = info["dtype"], info["shape"]
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        if dt == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif dt in _NP_DT:
            arr = np.frombuffer(buf, dtype=np.dtype(_NP_DT[dt]).newbyteorder("<"))
        else:
            raise ValueError("unsupported dtype %s for %s" % (dt, name))
        arr = np.array(arr, copy=True).reshape(shape)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        out[name] = torch.from_numpy(arr)
    return out


def save_safetensors(path, tensors, dtype="F32", metadata=None):
    """tensors: {name: torch tensor or ndarray}. dtype: F32, F16 or BF16 for
    floating tensors (integer tensors keep I64/I32)."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().numpy()
        t = np.ascontiguousarray(t)
        if t.dtype.kind == "f":
            a32 = t.astype("<f4")
            if dtype == "F32":
                data, dt = a32.tobytes(), "F32"
            elif dtype == "F16":
                data, dt = t.astype("<f2").tobytes(), "F16"
            elif dtype == "BF16":
                u = a32.view(np.uint32).astype(np.uint64)
                # round to nearest even
                u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
                data, dt = u.tobytes(), "BF16"
            else:
                raise ValueError(dtype)
        elif t.dtype == np.int64:
            data, dt = t.astype("<i8").tobytes(), "I64"
        elif t.dtype == np.int32:
            data, dt = t.astype("<i4").tobytes(), "I32"
        else:
            raise ValueError("unsupported array dtype %s" % t.dtype)
        header[name] = {"dtype": dt, "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------------------
# config / adapter
# ----------------------------------------------------------------------------

class Cfg:
    def __init__(self, d):
        self.vocab = int(d["vocab_size"])
        self.hidden = int(d["hidden_size"])
        self.inter = int(d["intermediate_size"])
        self.layers = int(d["num_hidden_layers"])
        self.heads = int(d["num_attention_heads"])
        kv = d.get("num_key_value_heads")
        self.kv_heads = int(kv) if kv is not None else self.heads
        self.max_pos = int(d.get("max_position_embeddings", 2048))
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        th = d.get("rope_theta")
        self.theta = float(th) if th is not None else 10000.0
        self.tied = bool(d.get("tie_word_embeddings", False))
        hd = d.get("head_dim")
        self.head_dim = int(hd) if hd is not None else self.hidden // self.heads
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError("hidden_act %r not supported" % act)
        if d.get("rope_scaling"):
            raise ValueError("rope_scaling not supported")
        assert self.heads % self.kv_heads == 0


_LORA_RE = re.compile(r"^(?:base_model\.model\.)?(.*)\.lora_([AB])(?:\.[A-Za-z0-9_]+)?\.weight$")


def parse_adapter(adapter_cfg, tensors):
    """Returns (scale, {module_name: {'A': (key, tensor), 'B': (key, tensor)}})."""
    r = int(adapter_cfg["r"])
    alpha = float(adapter_cfg.get("lora_alpha", r))
    if adapter_cfg.get("use_rslora", False):
        scale = alpha / math.sqrt(r)
    else:
        scale = alpha / r
    mods = {}
    for key, t in tensors.items():
        m = _LORA_RE.match(key)
        if not m:
            raise ValueError("unrecognised adapter key %s" % key)
        mods.setdefault(m.group(1), {})[m.group(2)] = (key, t)
    for name, ab in mods.items():
        if "A" not in ab or "B" not in ab:
            raise ValueError("module %s lacks lora_A or lora_B" % name)
        if ab["A"][1].shape[0] != r or ab["B"][1].shape[1] != r:
            raise ValueError("module %s: rank mismatch with r=%d" % (name, r))
    return scale, mods


# ----------------------------------------------------------------------------
# model math (dtype agnostic: works in float32 and float64)
# ----------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(T, d, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    pos = torch.arange(T, dtype=torch.int64).float()
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x, cos, sin):
    # x [B,T,n,d]; cos/sin [T,d]
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    return x * c + rotate_half(x) * s


class Model:
    """params: {HF name: tensor}; lora: {module: {'A':(key,t),'B':(key,t)}}."""

    def __init__(self, cfg, params, lora=None, scale=1.0):
        self.cfg, self.p, self.lora, self.scale = cfg, params, lora or {}, scale

    def linear(self, x, name):
        y = x @ self.p[name + ".weight"].t()
        ab = self.lora.get(name)
        if ab is not None:
            A, B = ab["A"][1], ab["B"][1]
            y = y + self.scale * ((x @ A.t()) @ B.t())
        return y

    def attention(self, x, i, cos, sin):
        c = self.cfg
        Bsz, T, _ = x.shape
        d, nh, nkv = c.head_dim, c.heads, c.kv_heads
        pre = "model.layers.%d.self_attn." % i
        q = self.linear(x, pre + "q_proj").view(Bsz, T, nh, d)
        k = self.linear(x, pre + "k_proj").view(Bsz, T, nkv, d)
        v = self.linear(x, pre + "v_proj").view(Bsz, T, nkv, d)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=2)  # kv head j serves q heads j*rep..j*rep+rep-1
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B,n,T,d]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        pos = torch.arange(T, device=x.device)
        mask = pos[None, :] > pos[:, None]  # key after query: masked (causal)
        scores = scores.masked_fill(mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        o = (probs @ v).transpose(1, 2).reshape(Bsz, T, nh * d)
        return self.linear(o, pre + "o_proj")

    def mlp(self, x, i):
        pre = "model.layers.%d.mlp." % i
        return self.linear(F.silu(self.linear(x, pre + "gate_proj")) * self.linear(x, pre + "up_proj"),
                           pre + "down_proj")

    def logits(self, inputs):
        c, p = self.cfg, self.p
        emb = p["model.embed_tokens.weight"]
        h = emb[inputs]
        T = inputs.shape[1]
        cos, sin = rope_cos_sin(T, c.head_dim, c.theta, emb.dtype)
        cos, sin = cos.to(emb.device), sin.to(emb.device)
        for i in range(c.layers):
            pre = "model.layers.%d." % i
            h = h + self.attention(rms_norm(h, p[pre + "input_layernorm.weight"], c.eps), i, cos, sin)
            h = h + self.mlp(rms_norm(h, p[pre + "post_attention_layernorm.weight"], c.eps), i)
        h = rms_norm(h, p["model.norm.weight"], c.eps)
        if c.tied:
            return h @ emb.t()
        return self.linear(h, "lm_head")


def ce_loss(logits, targets):
    V = logits.shape[-1]
    lp = torch.log_softmax(logits.reshape(-1, V), dim=-1)
    t = targets.reshape(-1)
    keep = t != -1
    tt = t.clamp(min=0)
    nll = -lp.gather(1, tt[:, None])[:, 0]
    return nll[keep].sum() / keep.sum().to(logits.dtype)


def param_names(cfg):
    names = ["model.embed_tokens.weight"]
    for i in range(cfg.layers):
        pre = "model.layers.%d." % i
        names += [pre + "input_layernorm.weight"]
        names += [pre + "self_attn.%s_proj.weight" % m for m in "qkvo"]
        names += [pre + "post_attention_layernorm.weight"]
        names += [pre + "mlp.%s_proj.weight" % m for m in ("gate", "up", "down")]
    names += ["model.norm.weight"]
    if not cfg.tied:
        names += ["lm_head.weight"]
    return names


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def run(args):
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = Cfg(json.load(f))
    raw = load_safetensors(os.path.join(args.model, "model.safetensors"))
    names = param_names(cfg)
    missing = [n for n in names if n not in raw]
    if missing:
        raise SystemExit("model.safetensors lacks: %s" % ", ".join(missing))
    params = {n: raw[n].float().clone() for n in names}
    lora, scale = {}, 1.0
    trainable = {}  # out key -> tensor
    if args.adapter:
        if args.full:
            raise SystemExit("--full and --adapter are exclusive")
        with open(os.path.join(args.adapter, "adapter_config.json")) as f:
            acfg = json.load(f)
        at = load_safetensors(os.path.join(args.adapter, "adapter_model.safetensors"))
        at = {k: v.float().clone().requires_grad_(True) for k, v in at.items()}
        scale, lora = parse_adapter(acfg, at)
        for mod in lora:
            if mod + ".weight" not in params:
                raise SystemExit("adapter targets unknown module %s" % mod)
        trainable = dict(at)
    elif args.full:
        for n in names:
            params[n].requires_grad_(True)
            trainable[n] = params[n]
    with open(args.batch) as f:
        batch = json.load(f)
    inputs = torch.tensor(batch["inputs"], dtype=torch.int64)
    targets = torch.tensor(batch["targets"], dtype=torch.int64)
    assert inputs.shape == targets.shape and inputs.dim() == 2
    model = Model(cfg, params, lora, scale)
    logits = model.logits(inputs)
    loss = ce_loss(logits, targets)
    out = {"loss": loss.detach().reshape(1), "logits": logits.detach()}
    if trainable:
        keys = sorted(trainable)
        grads = torch.autograd.grad(loss, [trainable[k] for k in keys], allow_unused=True)
        for k, g in zip(keys, grads):
            out[k] = g if g is not None else torch.zeros_like(trainable[k])
    save_safetensors(args.out, out, "F32", {"format": "pt"})
    if args.verbose:
        print("loss %.6f  tensors %d" % (loss.item(), len(out)))
    return out


# ----------------------------------------------------------------------------
# selftest
# ----------------------------------------------------------------------------

def _rand_case(g, cfg_d, rank=None, dtype=torch.float64, b_zero=False):
    cfg = Cfg(cfg_d)
    p = {}
    for n in param_names(Cfg(dict(cfg_d, tie_word_embeddings=False))):
        if n.endswith("norm.weight"):
            shape = (cfg.hidden,)
        elif n.endswith("embed_tokens.weight") or n == "lm_head.weight":
            shape = (cfg.vocab, cfg.hidden)
        else:
            shape = _proj_shape(cfg, n)
        if "norm" in n:
            t = 1 + 0.1 * torch.randn(shape, generator=g, dtype=dtype)
        elif "embed" in n:
            t = 0.5 * torch.randn(shape, generator=g, dtype=dtype)
        else:
            t = 0.2 * torch.randn(shape, generator=g, dtype=dtype)
        p[n] = t
    lora = {}
    if rank:
        for i in range(cfg.layers):
            for mod in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"):
                name = "model.layers.%d.%s" % (i, mod)
                out_f, in_f = p[name + ".weight"].shape
                A = (torch.rand(rank, in_f, generator=g, dtype=dtype) * 2 - 1) / math.sqrt(in_f)
                B = 0.1 * torch.randn(out_f, rank, generator=g, dtype=dtype)
                if b_zero:
                    B = torch.zeros_like(B)
                lora[name] = {"A": ("base_model.model.%s.lora_A.weight" % name, A),
                              "B": ("base_model.model.%s.lora_B.weight" % name, B)}
    return cfg, p, lora


def _proj_shape(cfg, n):
    H, I, d = cfg.hidden, cfg.inter, cfg.head_dim
    if "q_proj" in n:
        return (cfg.heads * d, H)
    if "k_proj" in n or "v_proj" in n:
        return (cfg.kv_heads * d, H)
    if "o_proj" in n:
        return (H, cfg.heads * d)
    if "gate_proj" in n or "up_proj" in n:
        return (I, H)
    if "down_proj" in n:
        return (H, I)
    raise KeyError(n)


def _fd_spot_check(g, loss_fn, leaves, per_tensor=2, h=1e-5, grads=None):
    """Compares d loss/d leaf at a few random entries of each leaf with a
    central difference of loss_fn() (leaves are modified in place and
    restored). Returns the worst error relative to max(|g|, 1e-3)."""
    keys = sorted(leaves)
    if grads is None:
        for k in keys:
            leaves[k].requires_grad_(True)
        grads = dict(zip(keys, torch.autograd.grad(loss_fn(), [leaves[k] for k in keys])))
    worst = 0.0
    with torch.no_grad():
        for k in keys:
            t = leaves[k]
            for _ in range(per_tensor):
                j = int(torch.randint(t.numel(), (1,), generator=g))
                idx = tuple(int(v) for v in np.unravel_index(j, tuple(t.shape)))
                orig = t[idx].item()
                t[idx] = orig + h
                lp = loss_fn().item()
                t[idx] = orig - h
                lm = loss_fn().item()
                t[idx] = orig
                fd = (lp - lm) / (2 * h)
                an = grads[k][idx].item()
                err = abs(fd - an) / max(abs(an), 1e-3)
                if err > worst:
                    worst = err
    return worst


def _e2e(g, cfg_d, inputs, targets, adapter):
    """Writes a float32 case to a temp dir, runs the CLI path (run()) and
    checks logits and gradients against a float64 recomputation (finite
    differences) from the same files."""
    import tempfile
    import types
    cfg, p, lora = _rand_case(g, cfg_d, rank=2 if adapter else None, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as td:
        os.makedirs(os.path.join(td, "model"))
        with open(os.path.join(td, "model", "config.json"), "w") as f:
            json.dump(cfg_d, f)
        save_safetensors(os.path.join(td, "model", "model.safetensors"),
                         {n: p[n] for n in param_names(cfg)}, "F32", {"format": "pt"})
        adir = None
        if adapter:
            adir = os.path.join(td, "adapter")
            os.makedirs(adir)
            with open(os.path.join(adir, "adapter_config.json"), "w") as f:
                json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "use_rslora": False,
                           "lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM",
                           "target_modules": ["q_proj", "v_proj", "down_proj"]}, f)
            save_safetensors(os.path.join(adir, "adapter_model.safetensors"),
                             {lora[m][ab][0]: lora[m][ab][1] for m in lora for ab in "AB"}, "F32")
        with open(os.path.join(td, "batch.json"), "w") as f:
            json.dump({"inputs": inputs.tolist(), "targets": targets.tolist()}, f)
        outp = os.path.join(td, "out.safetensors")
        run(types.SimpleNamespace(model=os.path.join(td, "model"), adapter=adir, full=not adapter,
                                  batch=os.path.join(td, "batch.json"), out=outp, verbose=False))
        got = load_safetensors(outp)
        # float64 recomputation from the files as written
        p64 = {k: v.double() for k, v in load_safetensors(
            os.path.join(td, "model", "model.safetensors")).items()}
        l64 = {}
        if adapter:
            at = {k: v.double() for k, v in load_safetensors(
                os.path.join(adir, "adapter_model.safetensors")).items()}
            _, l64 = parse_adapter({"r": 2, "lora_alpha": 4}, at)
            leaves = dict(at)
            want = set(at) | {"loss", "logits"}
        else:
            leaves = dict(p64)
            want = set(param_names(cfg)) | {"loss", "logits"}
    cfg64 = Cfg(cfg_d)

    def loss_fn():
        return ce_loss(Model(cfg64, p64, l64, 2.0).logits(inputs), targets)

    ok = set(got) == want
    with torch.no_grad():
        lg = Model(cfg64, p64, l64, 2.0).logits(inputs)
        ok = ok and got["logits"].shape == lg.shape and \
            (got["logits"].double() - lg).abs().max().item() < 1e-4
        ok = ok and abs(got["loss"].item() - ce_loss(lg, targets).item()) < 1e-5
    worst = _fd_spot_check(g, loss_fn, leaves, per_tensor=2, h=1e-5,
                           grads={k: got[k].double() for k in leaves})
    # float32 gradients vs float64 differences: ~1e-6 relative expected
    return ok and worst < 1e-4


def selftest():
    ok = True

    def check(name, cond, detail=""):
        nonlocal ok
        print("%s %s %s" % ("PASS" if cond else "FAIL", name, detail))
        ok = ok and bool(cond)

    g = torch.Generator().manual_seed(1234)
    base_cfg = dict(vocab_size=11, hidden_size=8, intermediate_size=12, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    inputs = torch.tensor([[1, 5, 3, 10, 0], [7, 2, 2, 9, 4]])
    targets = torch.tensor([[5, 3, -1, 0, 6], [2, 2, 9, 4, -1]])

    # 1. gradcheck (float64): LoRA A/B element-wise (full Jacobian); all base
    #    weights + LoRA with fast_mode (random directional derivatives).
    #    Untied GQA, and tied with head_dim != hidden/heads.
    for label, extra in (("untied", {}), ("head_dim=6 tied", {"head_dim": 6, "tie_word_embeddings": True})):
        cfg, p, lora = _rand_case(g, dict(base_cfg, **extra), rank=2)
        names = param_names(cfg)
        lkeys = [(m, ab) for m in sorted(lora) for ab in ("A", "B")]

        def make_f(base_ts):
            def f(*ts):
                pp = dict(base_ts) if base_ts is not None else dict(zip(names, ts[:len(names)]))
                lts = ts[len(names):] if base_ts is None else ts
                ll = {}
                for (m, ab), t in zip(lkeys, lts):
                    ll.setdefault(m, {})[ab] = (lora[m][ab][0], t)
                return ce_loss(Model(cfg, pp, ll, 2.0).logits(inputs), targets)
            return f

        ltens = [lora[m][ab][1].clone().requires_grad_(True) for m, ab in lkeys]
        btens = [p[n].clone().requires_grad_(True) for n in names]
        for mode, fn, ins, fast in (("lora full", make_f(p), ltens, False),
                                    ("all fast", make_f(None), btens + ltens, True)):
            try:
                r = torch.autograd.gradcheck(fn, ins, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast)
            except Exception as e:  # gradcheck raises on mismatch
                r = False
                print(e)
            check("gradcheck float64 %s (%s)" % (mode, label), r)

    # 2. B = 0 -> adapter logits equal base logits
    cfg, p, lora = _rand_case(g, base_cfg, rank=3, dtype=torch.float32, b_zero=True)
    lb = Model(cfg, p).logits(inputs)
    la = Model(cfg, p, lora, 2.0).logits(inputs)
    check("B=0 adapter == base", torch.equal(la, lb), "maxdiff=%g" % (la - lb).abs().max().item())
    # and non-zero B changes them
    cfg, p, lora = _rand_case(g, base_cfg, rank=3, dtype=torch.float32)
    d = (Model(cfg, p, lora, 2.0).logits(inputs) - Model(cfg, p).logits(inputs)).abs().max().item()
    check("B!=0 adapter != base", d > 1e-4, "maxdiff=%g" % d)

    # 3. tied vs untied: untied with lm_head = embed gives the same logits;
    #    tied embed grad = untied embed grad + lm_head grad.
    cfg_u, p, _ = _rand_case(g, base_cfg, dtype=torch.float64)
    p["lm_head.weight"] = p["model.embed_tokens.weight"].clone()
    cfg_t = Cfg(dict(base_cfg, tie_word_embeddings=True))
    pu = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    pt = {k: v.clone().requires_grad_(True) for k, v in p.items() if k != "lm_head.weight"}
    lu, lt = Model(cfg_u, pu).logits(inputs), Model(cfg_t, pt).logits(inputs)
    check("tied == untied(lm_head=embed) logits", torch.allclose(lu, lt, atol=1e-12))
    ce_loss(lu, targets).backward()
    ce_loss(lt, targets).backward()
    gsum = pu["model.embed_tokens.weight"].grad + pu["lm_head.weight"].grad
    check("tied embed grad == embed+lm_head grads",
          torch.allclose(pt["model.embed_tokens.weight"].grad, gsum, atol=1e-12))

    # 4. GQA convention: a kv-head model equals an MHA model whose k/v rows are
    #    repeated per kv head (repeat_interleave -> consecutive query heads).
    cfg_g, p, _ = _rand_case(g, dict(base_cfg, num_attention_heads=4, num_key_value_heads=2,
                                     hidden_size=8, head_dim=4), dtype=torch.float64)
    cfg_m = Cfg(dict(base_cfg, num_attention_heads=4, num_key_value_heads=4, hidden_size=8, head_dim=4))
    pm = dict(p)
    for n in ("k_proj", "v_proj"):
        w = p["model.layers.0.self_attn.%s.weight" % n].view(2, 4, 8)
        pm["model.layers.0.self_attn.%s.weight" % n] = w.repeat_interleave(2, dim=0).reshape(16, 8)
    check("GQA == MHA with repeated kv heads",
          torch.allclose(Model(cfg_g, p).logits(inputs), Model(cfg_m, pm).logits(inputs), atol=1e-12))

    # 5. rotary: q'.k' depends only on the position difference; and matches the
    #    half-split complex form (x[:d/2] + i x[d/2:]) * e^{i pos f}.
    #    (inv_freq is computed in float32 as HF does, hence the 1e-6 tolerance.)
    dd = 6
    cos, sin = rope_cos_sin(10, dd, 10000.0, torch.float64)
    q = torch.randn(1, 1, 1, dd, dtype=torch.float64, generator=g).expand(1, 10, 1, dd)
    k = torch.randn(1, 1, 1, dd, dtype=torch.float64, generator=g).expand(1, 10, 1, dd)
    qr, kr = apply_rope(q, cos, sin)[0, :, 0], apply_rope(k, cos, sin)[0, :, 0]
    s1 = (qr[5] * kr[2]).sum()
    s2 = (qr[7] * kr[4]).sum()
    inv = 1.0 / (10000.0 ** (torch.arange(0, dd, 2, dtype=torch.float64) / dd))
    qc = torch.complex(q[0, 3, 0, :dd // 2], q[0, 3, 0, dd // 2:]) * torch.exp(1j * 3 * inv)
    qc_ref = torch.cat((qc.real, qc.imag))
    check("rope relative + half-split form",
          abs(s1 - s2) < 1e-6 and torch.allclose(qr[3], qc_ref, atol=1e-6))

    # 6. finite-difference spot check (float64, central differences) of the
    #    autograd gradient on a 2-layer GQA case: a few entries of every
    #    tensor kind (all base weights and LoRA A/B).
    cfg, p, lora = _rand_case(g, dict(base_cfg, hidden_size=16, num_attention_heads=4,
                                      num_key_value_heads=2, num_hidden_layers=2), rank=2)
    leaves = dict((n, p[n]) for n in param_names(cfg))
    for m in lora:
        for ab in ("A", "B"):
            leaves[lora[m][ab][0]] = lora[m][ab][1]
    worst = _fd_spot_check(g, lambda: ce_loss(Model(cfg, p, lora, 2.0).logits(inputs), targets),
                           leaves, per_tensor=2, h=1e-5)
    check("finite differences float64", worst < 1e-6, "worst rel err=%.2e" % worst)

    # 7. end to end through the CLI path: float32 files -> run() -> output
    #    file, gradients compared with float64 finite differences.
    check("end-to-end CLI (adapter, untied)", _e2e(g, base_cfg, inputs, targets, adapter=True))
    check("end-to-end CLI (--full, tied)", _e2e(g, dict(base_cfg, tie_word_embeddings=True),
                                              inputs, targets, adapter=False))

    # 8. safetensors round trip (F32, BF16 and F16)
    import tempfile
    with tempfile.TemporaryDirectory() as td:
        t = {"a": torch.randn(3, 5, generator=g), "b": torch.tensor([1.0, -2.5, 3.0e-3])}
        rt_ok = True
        for dt, tol in (("F32", 0), ("BF16", 1e-2), ("F16", 1e-3)):
            fn = os.path.join(td, "x.safetensors")
            save_safetensors(fn, t, dt)
            r = load_safetensors(fn)
            for k in t:
                rt_ok = rt_ok and r[k].shape == t[k].shape and \
                    torch.allclose(r[k], t[k], rtol=tol, atol=tol * 1e-2)
        check("safetensors round trip", rt_ok)

    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model")
    ap.add_argument("--adapter")
    ap.add_argument("--batch")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.selftest:
        sys.exit(selftest())
    if not (args.model and args.batch and args.out):
        ap.error("--model, --batch and --out are required (or --selftest)")
    run(args)


if __name__ == "__main__":
    main()
