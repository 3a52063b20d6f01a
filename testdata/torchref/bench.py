#!/usr/bin/env python3
"""Times a LoRA training step in PyTorch (eager, float32 compute) for `lens bench`.

The model is HF's LlamaForCausalLM written out in plain PyTorch (grouped KV
heads, llama3 rope_scaling, tied embeddings, eager attention) with PEFT LoRA
on the --targets modules, AdamW on the adapter only. Its weights, LoRA A
matrices and tokens come from the same integer hash as lens bench's
(benchFill in cmd/lens/bench.go), so both sides train the same model and
their losses agree.

Variants, each what lens does beside it:
  --checkpointing  torch.utils.checkpoint per decoder layer (use_reentrant=False)
  --quant bf16     base linear weights stored as bfloat16
  --quant nf4      base linear weights as NF4 codes (uint8, two a byte, high
                   nibble first) + float32 absmax per block of 64, bitsandbytes'
                   code book and thresholds; nf4-dq also quantizes the absmax
                   (8-bit dynamic map, blocks of 256, mean offset)
                   With any --quant the embedding (tied head) is stored as
                   bfloat16. Every packed weight is widened to float32 inside
                   a custom autograd Function per product, forward and
                   backward, and never saved whole.
  --head-chunk N   head and cross-entropy N tokens at a time, each chunk
                   under torch.utils.checkpoint, so no N×V logits are kept.

Prints one JSON line: tokens_per_s, step_s, peak_rss_bytes (VmHWM), losses
(every step's, warm-up included), threads, blas. With --device cuda the
model lives on the GPU, the clock stops after torch.cuda.synchronize(), and
device and peak_device_bytes are added.
"""
import argparse
import json
import math
import os
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

def mix32(x):
    """Mueller's 32-bit hash on a uint32 array (numpy's uint32 products wrap
    mod 2**32, as Go's do)."""
    m = np.uint32(0x45D9F3B)
    x = ((x >> np.uint32(16)) ^ x) * m
    x = ((x >> np.uint32(16)) ^ x) * m
    return (x >> np.uint32(16)) ^ x


def hashed(name, start, stop):
    seed = np.uint32(zlib.crc32(name.encode()))
    return mix32(mix32(np.arange(start, stop, dtype=np.uint32)) ^ seed)


def fill(name, shape, bound, chunk=1 << 20):
    """benchFill: uniform in ±bound, computed in float64, rounded once."""
    n = math.prod(shape)
    out = np.empty(n, dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        out[s:e] = ((hashed(name, s, e).astype(np.float64) + 0.5) / 4294967296.0 * 2 - 1) * bound
    return torch.from_numpy(out).view(*shape)


def tokens(name, n, vocab):
    return torch.from_numpy((hashed(name, 0, n) % np.uint32(vocab)).astype(np.int64))


# ---- NF4 (bitsandbytes' layout; the same as nf4_ref.py and engine/quant) ----

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=torch.float32)
MIDS = torch.tensor([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=torch.float32)
# Each byte's two values (high nibble first): dequantizing is one lookup.
PAIRS = torch.stack([NF4.repeat_interleave(16), NF4.repeat(16)], dim=1)


def dynamic_map():
    # bitsandbytes.functional.create_dynamic_map(signed=True)
    data = []
    for i in range(7):
        items = int(2 ** i + 1)
        b = torch.linspace(0.1, 1, items)
        means = (b[:-1] + b[1:]) / 2.0
        data += (10 ** (-6 + i) * means).tolist()
        data += (-10 ** (-6 + i) * means).tolist()
    data += [0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


class NF4Weight:
    """An out×in weight as NF4 codes and block scales. Blocks are 64 values
    of the flat tensor; every bench shape's sizes are multiples of 64."""

    def __init__(self, w, double):
        self.shape = w.shape
        b = w.reshape(-1, 64)
        absmax = b.abs().max(dim=1).values
        codes = torch.empty(b.numel(), dtype=torch.uint8)
        rows = 1 << 14  # blocks at a time: bucketize's int64 output stays small
        for s in range(0, b.shape[0], rows):
            sc = b[s:s + rows] * (1.0 / absmax[s:s + rows]).unsqueeze(1)
            codes[s * 64:(s + rows) * 64] = torch.bucketize(sc, MIDS, right=False).reshape(-1).to(torch.uint8)
        self.packed = (codes[0::2] << 4) | codes[1::2]
        if double:
            # The mean in float64, rounded once; blocks of 256 padded with
            # zeros; nearest entry of the dynamic map (as nf4_ref.py).
            offset = absmax.double().mean().float()
            nb = absmax.numel()
            v = torch.zeros((nb + 255) // 256 * 256)
            v[:nb] = absmax - offset
            v = v.view(-1, 256)
            a2 = v.abs().max(dim=1).values
            dyn = dynamic_map()
            q = torch.empty(v.shape, dtype=torch.uint8)
            for s in range(0, v.shape[0], 64):
                sc = v[s:s + 64] * (1.0 / a2[s:s + 64]).unsqueeze(1)
                q[s:s + 64] = torch.argmin((sc.unsqueeze(-1) - dyn).abs(), dim=-1).to(torch.uint8)
            absmax = ((dyn[q.long()] * a2.unsqueeze(1)).reshape(-1) + offset)[:nb]
        self.absmax = absmax

    def widen(self):
        w = PAIRS.index_select(0, self.packed.int()).view(-1, 64)
        return w.mul_(self.absmax.unsqueeze(1)).view(self.shape)


class BF16Weight:
    def __init__(self, w):
        self.w = w.to(torch.bfloat16)  # round to nearest even, as quant.ToBF16

    def widen(self):
        return self.w.float()


class PackedLinear(torch.autograd.Function):
    """y = x·Wᵀ with W frozen and held packed: widened in forward and again
    in backward (as bitsandbytes' MatMul4Bit), never saved in float32."""

    @staticmethod
    def forward(ctx, x, holder):
        ctx.holder = holder
        return x @ holder.widen().t()

    @staticmethod
    def backward(ctx, g):
        return g @ ctx.holder.widen(), None


TABLE_BLOCK = 1 << 23  # values widened at once (32 MB), as lens's tables


class PackedHead(torch.autograd.Function):
    """logits = x·Eᵀ with a frozen bf16 table E, widened a block of
    vocabulary rows at a time in forward and backward."""

    @staticmethod
    def forward(ctx, x, table):
        ctx.table = table
        V, H = table.w.shape
        rows = max(1, TABLE_BLOCK // H)
        return torch.cat([x @ table.w[v:v + rows].float().t() for v in range(0, V, rows)], dim=1)

    @staticmethod
    def backward(ctx, g):
        V, H = ctx.table.w.shape
        rows = max(1, TABLE_BLOCK // H)
        dx = None
        for v in range(0, V, rows):
            p = g[:, v:v + rows] @ ctx.table.w[v:v + rows].float()
            dx = p if dx is None else dx + p
        return dx, None


class Model:
    def __init__(self, a, params, lora, scale):
        self.a, self.p, self.lora, self.scale = a, params, lora, scale
        d = a.head_dim
        inv = 1.0 / (a.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        if a.rope_scaling:
            inv = llama3_inv_freq(inv, json.loads(a.rope_scaling))
        pos = torch.arange(a.seq, dtype=torch.int64).float()
        f = torch.outer(pos, inv)
        emb = torch.cat((f, f), dim=-1)
        self.cos, self.sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]

    def linear(self, x, name):
        w = self.p[name + ".weight"]
        y = x @ w.t() if isinstance(w, torch.Tensor) else PackedLinear.apply(x, w)
        ab = self.lora.get(name)
        if ab is not None:
            y = y + self.scale * ((x @ ab[0].t()) @ ab[1].t())
        return y

    def norm(self, x, name):
        return self.p[name] * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    def rope(self, x):
        h = x.shape[-1] // 2
        return x * self.cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * self.sin

    def layer(self, h, i):
        a = self.a
        B, T, _ = h.shape
        pre = "model.layers.%d." % i
        x = self.norm(h, pre + "input_layernorm.weight")
        q = self.rope(self.linear(x, pre + "self_attn.q_proj").view(B, T, a.heads, a.head_dim))
        k = self.rope(self.linear(x, pre + "self_attn.k_proj").view(B, T, a.kv_heads, a.head_dim))
        v = self.linear(x, pre + "self_attn.v_proj").view(B, T, a.kv_heads, a.head_dim)
        rep = a.heads // a.kv_heads
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(a.head_dim)
        pos = torch.arange(T, device=h.device)
        s = s.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, a.heads * a.head_dim)
        h = h + self.linear(o, pre + "self_attn.o_proj")
        x = self.norm(h, pre + "post_attention_layernorm.weight")
        m = F.silu(self.linear(x, pre + "mlp.gate_proj")) * self.linear(x, pre + "mlp.up_proj")
        return h + self.linear(m, pre + "mlp.down_proj")

    def head_loss(self, h, targets):
        """Summed cross-entropy of rows h against targets (tied head)."""
        e = self.p["model.embed_tokens.weight"]
        logits = h @ e.t() if isinstance(e, torch.Tensor) else PackedHead.apply(h, e)
        return F.cross_entropy(logits, targets, reduction="sum")

    def loss(self, inputs, targets):
        a = self.a
        e = self.p["model.embed_tokens.weight"]
        if isinstance(e, torch.Tensor):
            h = e[inputs]
        else:  # bf16 rows, widened
            h = e.w[inputs].float()
        for i in range(a.layers):
            h = checkpoint(self.layer, h, i, use_reentrant=False) if a.checkpointing else self.layer(h, i)
        h = self.norm(h, "model.norm.weight").reshape(-1, a.hidden)
        t = targets.reshape(-1)
        if a.head_chunk <= 0:
            return self.head_loss(h, t) / t.numel()
        total = 0
        for s in range(0, t.numel(), a.head_chunk):
            total = total + checkpoint(self.head_loss, h[s:s + a.head_chunk], t[s:s + a.head_chunk], use_reentrant=False)
        return total / t.numel()


def llama3_inv_freq(inv_freq, sc):
    # transformers' _compute_llama3_parameters
    factor, low, high = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
    old = sc["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    inv_l = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, inv_l)


def peak_rss():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--head-dim", type=int, default=0)
    ap.add_argument("--inter", type=int, required=True)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rope-scaling", default="", help="rope_scaling as JSON (llama3 only)")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--quant", default="", choices=["", "bf16", "nf4", "nf4-dq"])
    ap.add_argument("--head-chunk", type=int, default=0)
    a = ap.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    a.head_dim = a.head_dim or a.hidden // a.heads
    a.alpha = a.alpha or 2.0 * a.rank
    if a.rope_scaling and json.loads(a.rope_scaling).get("rope_type") != "llama3":
        raise SystemExit("--rope-scaling: only llama3 is implemented")
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    H, I, V, d = a.hidden, a.inter, a.vocab, a.head_dim
    shapes = {"q_proj": (a.heads * d, H), "k_proj": (a.kv_heads * d, H), "v_proj": (a.kv_heads * d, H),
              "o_proj": (H, a.heads * d), "gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I)}
    targets = a.targets.split(",")
    wb = 0.02 * math.sqrt(3)
    params, lora, trainable = {}, {}, []

    def base(name, shape, table=False):
        w = fill(name, shape, wb)
        if not a.quant:
            return w.to(dev)
        if dev.type != "cpu":
            raise SystemExit("--quant runs on the CPU only")
        if table or a.quant == "bf16":
            return BF16Weight(w)
        return NF4Weight(w, a.quant == "nf4-dq")

    params["model.embed_tokens.weight"] = base("model.embed_tokens.weight", (V, H), table=True)
    params["model.norm.weight"] = torch.ones(H, device=dev)
    for i in range(a.layers):
        pre = "model.layers.%d." % i
        params[pre + "input_layernorm.weight"] = torch.ones(H, device=dev)
        params[pre + "post_attention_layernorm.weight"] = torch.ones(H, device=dev)
        for m, (o, n) in shapes.items():
            path = pre + ("self_attn." if m in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp.") + m
            params[path + ".weight"] = base(path + ".weight", (o, n))
            if m in targets:
                A = fill(path + ".lora_A", (a.rank, n), 1 / math.sqrt(n)).to(dev).requires_grad_()
                B = torch.zeros(o, a.rank, device=dev).requires_grad_()
                lora[path] = (A, B)
                trainable += [A, B]
    model = Model(a, params, lora, a.alpha / a.rank)
    model.cos, model.sin = model.cos.to(dev), model.sin.to(dev)
    opt = torch.optim.AdamW(trainable, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    n = a.batch * a.seq
    inputs = tokens("inputs", n, V).view(a.batch, a.seq).to(dev)
    tgts = tokens("targets", n, V).view(a.batch, a.seq).to(dev)
    cuda = dev.type == "cuda"
    losses = []

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.loss(inputs, tgts)
        loss.backward()
        opt.step()
        losses.append(loss.item())

    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / a.steps
    out = {"tokens_per_s": n / dt, "step_s": dt, "peak_rss_bytes": peak_rss(), "losses": losses,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "blas": blas_library()}
    if cuda:
        out["device"] = torch.cuda.get_device_name(dev)
        out["peak_device_bytes"] = torch.cuda.max_memory_allocated(dev)
    print(json.dumps(out))


def blas_library():
    """The BLAS shared library this process loaded (Debian's PyTorch calls
    whatever libblas.so.3 points to: the reference BLAS or OpenBLAS)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return ""
    for p in sorted(paths):
        real = os.path.realpath(p)
        if "blas" in os.path.basename(real).lower():
            return real
    return ""


if __name__ == "__main__":
    main()
