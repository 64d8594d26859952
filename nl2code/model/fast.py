"""Inference form of a trained Transformer: the same maths in far fewer ops per step.

Decoding one token for five beams is tiny work (a few MFLOP), so eager PyTorch spends most
of its time on op dispatch, not arithmetic (benchmarks/RESULTS.md, "Compute limit"). This
form keeps the model's weights but lays them out for decoding:

- self-attention q, k and v come from one fused matmul; biases ride in `addmm`;
- the self-attention cache is preallocated once per query, position-major
  (max_len, layers, k/v, rows, heads, d_head), so a step writes one slot per layer and a
  beam reorder is a single `index_select` of the filled prefix into a spare buffer;
- each decoder layer's cross-attention is folded into the memory once per query (see
  `encode`): a step's cross-attention is two batched matmuls and a softmax;
- the encoder runs with the same fused layout;
- with precision "int8", every matmul of encoder and decoder and the output projection run
  through fbgemm's dynamic int8 kernels on per-channel int8 weights. With five rows per
  matmul the float32 kernels run far below peak (a 5×256→8000 product takes ~0.7 ms); int8
  cuts that about four-fold. Each int8 call has ~18 µs of fixed cost, which is why the
  remaining time is mostly op dispatch (benchmarks/RESULTS.md, "Compute limit").

It implements the decode protocol (encode / step / reorder_cache / expand_memory), so
decode.py drives it like the training model. Training never sees this class.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from nl2code.errors import UsageError
from nl2code.model import PRECISIONS


def int8_available() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines


def available_precisions() -> list[str]:
    """The precisions this PyTorch build can run, float32 first."""
    return ["float32"] + (["int8"] if int8_available() else [])


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, precision: str):
    """-> f(x) = x @ W.T + b for 2-D x: float32, or dynamic int8 with per-channel weights.

    A closure rather than a module: one Python call per matmul on the decoding hot path.
    """
    weight = weight.detach().float()
    bias = None if bias is None else bias.detach().float().contiguous()
    if precision == "int8":
        scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-8).double()
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated, still shipped
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(qweight, bias)
        op = torch.ops.quantized.linear_dynamic.default
        # the overload's C++ callable: the Python wrapper first scans every argument for
        # FakeScriptObjects (~9 us a call, ~250 calls an answer); same kernel, same numbers
        op = getattr(op, "_op", op)

        def int8(x: torch.Tensor) -> torch.Tensor:
            return op(x, packed, True)  # reduce_range: fbgemm's AVX2 kernels need 7-bit inputs

        return int8
    wt = weight.t().contiguous()  # (in, out): addmm's fast layout for few rows
    b = bias if bias is not None else torch.zeros(weight.shape[0])

    def fp32(x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(b, x, wt)

    return fp32


class _Norm:
    def __init__(self, ln):
        self.shape = ln.normalized_shape
        self.w, self.b, self.eps = ln.weight.detach(), ln.bias.detach(), ln.eps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, self.w, self.b, self.eps)


def _fused_qkv(attn, precision: str, q_scale: float = 1.0):
    """One matmul for an Attention's q and its k/v projections: output [q | k | v]."""
    w = torch.cat([attn.q.weight * q_scale, attn.kv.weight])
    b = torch.cat([attn.q.bias * q_scale, attn.kv.bias])
    return _linear(w, b, precision)


class _EncLayer:
    def __init__(self, layer, precision: str):
        self.ln1, self.ln2 = _Norm(layer.ln1), _Norm(layer.ln2)
        self.qkv = _fused_qkv(layer.attn, precision)
        self.out = _linear(layer.attn.out.weight, layer.attn.out.bias, precision)
        self.ff1 = _linear(layer.ff[0].weight, layer.ff[0].bias, precision)
        self.ff2 = _linear(layer.ff[2].weight, layer.ff[2].bias, precision)


class _CrossFold:
    """A decoder layer's cross-attention weights, laid out to fold into the memory."""

    def __init__(self, layer, H: int, dh: int, precision: str):
        ca = layer.cross
        d = H * dh
        self.kv = _linear(ca.kv.weight, ca.kv.bias, precision)
        self.wq = (ca.q.weight.detach().view(H, dh, d) / math.sqrt(dh)).contiguous()  # (H, dh, d)
        self.bq = (ca.q.bias.detach().view(H, dh, 1) / math.sqrt(dh)).contiguous()  # (H, dh, 1)
        self.wo = ca.out.weight.detach().view(d, H, dh).permute(1, 2, 0).contiguous()  # (H, dh, d)
        self.bo = (ca.out.bias.detach() / H).contiguous()


class _DecLayer:
    def __init__(self, layer, precision: str):
        self.ln1, self.ln2, self.ln3 = _Norm(layer.ln1), _Norm(layer.ln2), _Norm(layer.ln3)
        self.qkv = _fused_qkv(layer.self_attn, precision)
        self.self_out = _linear(layer.self_attn.out.weight, layer.self_attn.out.bias, precision)
        self.ff1 = _linear(layer.ff[0].weight, layer.ff[0].bias, precision)
        self.ff2 = _linear(layer.ff[2].weight, layer.ff[2].bias, precision)


class FastTransformer:
    """Decoding-only view of a `Transformer` (see the module docstring)."""

    def __init__(self, model, precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if precision not in available_precisions():
            raise UsageError("int8 needs PyTorch's fbgemm engine, which this build lacks: use --precision float32")
        model.eval()
        c = model.cfg
        self.cfg, self.precision, self.model = c, precision, model
        self.d, self.H = c.d_model, c.n_head
        self.dh = c.d_model // c.n_head
        self.max_len = c.max_len
        with torch.inference_mode(False), torch.no_grad():
            self.emb = (model.embed.weight.detach() * model.scale).contiguous()
            self.pos = model.pos.detach().clone()
            self.layers = [_DecLayer(layer, precision) for layer in model.dec]
            self.enc_layers = [_EncLayer(layer, precision) for layer in model.enc]
            self.enc_ln = _Norm(model.enc_ln)
            self.cross = [_CrossFold(layer, self.H, self.dh, precision) for layer in model.dec]
            self.final_ln = _Norm(model.dec_ln)
            self.out = _linear(model.embed.weight, None, precision)
        self.n_layer = len(self.layers)

    # the decode protocol -------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> dict:
        """Run the encoder once and fold each decoder layer's cross-attention weights into
        the memory, so a step's cross-attention is two small batched matmuls.

        With k, v the layer's projected memory (per head h and source position s):
          score[h, s] = ln2(x) . (W_q,h^T k_h[s]) / sqrt(dh) + b_q,h . k_h[s] / sqrt(dh)
          out         = sum_h,s p[h, s] (W_o,h v_h[s] + b_o / H)       (p sums to 1 per head)
        so keys become (d, H*S) columns, the query bias and the padding mask one additive
        row, and the output projection and its bias move into the values.
        """
        B, S = src.shape
        H, dh, d = self.H, self.dh, self.d
        BS = B * S
        x = (F.embedding(src, self.emb) + self.pos[:S]).view(BS, d)
        attend = src_mask[:, None, None, :]  # (B, 1, 1, S) True = attend
        for layer in self.enc_layers:
            qkv = layer.qkv(layer.ln1(x)).view(B, S, 3, H, dh).permute(2, 0, 3, 1, 4)  # (3, B, H, S, dh)
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attend)
            x = x + layer.out(a.transpose(1, 2).reshape(BS, d))
            x = x + layer.ff2(F.gelu(layer.ff1(layer.ln2(x))))
        x = self.enc_ln(x)
        pad = torch.zeros(B, 1, H, S).masked_fill(~attend, float("-inf"))
        layers = []
        for fold in self.cross:
            kv = fold.kv(x).view(B, S, 2, H, dh).permute(2, 0, 3, 1, 4)  # (2, B, H, S, dh)
            keys = torch.matmul(kv[0], fold.wq).permute(0, 3, 1, 2).reshape(B, d, H * S)
            bias = torch.matmul(kv[0], fold.bq).view(B, 1, H, S).add_(pad).view(B, 1, H * S)
            values = torch.matmul(kv[1], fold.wo).add_(fold.bo).view(B, H * S, d)
            layers.append((keys, bias, values))
        return {"layers": layers, "group": 1, "heads": (H, S)}

    @staticmethod
    def expand_memory(memory: dict, idx: torch.Tensor) -> dict:
        """Rows idx of the memory. The beam's pattern (each intent repeated g times in a
        row) keeps one copy per intent and a group size; any other pattern copies rows."""
        M = memory["layers"][0][0].shape[0]
        g = memory["group"]
        if g == 1 and len(idx) % M == 0:
            g2 = len(idx) // M
            if torch.equal(idx, torch.arange(M).repeat_interleave(g2)):
                return {**memory, "group": g2}
        rows = torch.div(idx, g, rounding_mode="floor") if g > 1 else idx
        layers = [tuple(x.index_select(0, rows) for x in lay) for lay in memory["layers"]]
        return {**memory, "layers": layers, "group": 1}

    def _new_cache(self, rows: int) -> dict:
        shape = (self.max_len, self.n_layer, 2, rows, self.H, self.dh)
        return {"t": 0, "buf": torch.empty(shape), "spare": torch.empty(shape)}

    def step(self, tgt_ids: torch.Tensor, memory: dict, cache: dict | None):
        N = tgt_ids.shape[0]
        if tgt_ids.shape[1] != 1:
            raise ValueError("FastTransformer.step takes one token per row")
        cache = cache or self._new_cache(N)
        t = cache["t"]
        if t >= self.max_len:
            raise ValueError(f"position {t} is past the model's max_len {self.max_len}")
        buf = cache["buf"]
        H, dh, d = self.H, self.dh, self.d
        x = F.embedding(tgt_ids[:, 0], self.emb) + self.pos[t]  # (N, d)
        g = memory["group"]
        M = N // g  # memory entries; rows of one entry are consecutive
        H_S = memory["heads"]
        for i, (layer, (keys, bias, values)) in enumerate(zip(self.layers, memory["layers"])):
            qkv = layer.qkv(layer.ln1(x)).view(N, 3, H, dh)
            buf[t, i] = qkv[:, 1:].transpose(0, 1)  # this position's k and v
            kv = buf[: t + 1, i].permute(1, 2, 3, 0, 4)  # (2, N, H, t+1, dh)
            q = qkv[:, 0].unsqueeze(2)  # (N, H, 1, dh)
            a = F.scaled_dot_product_attention(q, kv[0], kv[1])
            x = x + layer.self_out(a.reshape(N, d))
            scores = torch.baddbmm(bias, layer.ln2(x).view(M, g, d), keys)  # (M, g, H*S)
            p = torch.softmax(scores.view(M, g, *H_S), dim=-1).view(M, g, -1)
            x = torch.baddbmm(x.view(M, g, d), p, values).view(N, d)
            x = x + layer.ff2(F.gelu(layer.ff1(layer.ln3(x))))
        logits = self.out(self.final_ln(x))
        cache["t"] = t + 1
        return logits, cache

    @staticmethod
    def reorder_cache(cache: dict, beam_idx: torch.Tensor) -> dict:
        t, buf, spare = cache["t"], cache["buf"], cache["spare"]
        if len(beam_idx) != buf.shape[3]:  # a different row count: fresh buffers
            shape = (*buf.shape[:3], len(beam_idx), *buf.shape[4:])
            fresh = torch.empty(shape)
            fresh[:t] = buf[:t].index_select(3, beam_idx)
            return {"t": t, "buf": fresh, "spare": torch.empty(shape)}
        torch.index_select(buf[:t], 3, beam_idx, out=spare[:t])
        return {"t": t, "buf": spare, "spare": buf}
