"""Pre-LN Transformer encoder-decoder with tied embeddings and a KV cache.

Pre-LN (Xiong et al. 2020, arXiv:2002.04745) trains stably without long warm-up, which
matters when a run has a few CPU hours. Embeddings are shared by encoder, decoder and the
output projection (Press & Wolf 2017): one vocabulary, a third fewer parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nl2code.config import ModelConfig


def sinusoid(max_len: int, d: int) -> torch.Tensor:
    pos = torch.arange(max_len).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class Attention(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head, self.d_head = n_head, d_model // n_head
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, h, T, dh)
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.d_head).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def attend(self, x, k, v, mask=None, causal=False) -> torch.Tensor:
        q = self.split(self.q(x))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal)
        B, h, T, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, h * dh))


class EncoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = Attention(c.d_model, c.n_head, c.dropout)
        self.ff = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, mask):
        h = self.ln1(x)
        k, v = self.attn.project_kv(h)
        x = x + self.drop(self.attn.attend(h, k, v, mask))
        return x + self.drop(self.ff(self.ln2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(c.d_model) for _ in range(3))
        self.self_attn = Attention(c.d_model, c.n_head, c.dropout)
        self.cross = Attention(c.d_model, c.n_head, c.dropout)
        self.ff = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, mem_kv, mem_mask, self_kv=None, self_mask=None):
        """Full sequence when self_kv is None (training); else one step with a cache.
        self_mask (full sequence only): an explicit self-attention mask instead of causal
        (packed rows: causal within each row)."""
        h = self.ln1(x)
        k, v = self.self_attn.project_kv(h)
        if self_kv is None:
            if self_mask is not None:
                a = self.self_attn.attend(h, k, v, self_mask)
            else:
                a = self.self_attn.attend(h, k, v, causal=True)
        else:
            if self_kv[0] is not None:
                k = torch.cat([self_kv[0], k], dim=2)
                v = torch.cat([self_kv[1], v], dim=2)
            a = self.self_attn.attend(h, k, v)
        x = x + self.drop(a)
        x = x + self.drop(self.cross.attend(self.ln2(x), mem_kv[0], mem_kv[1], mem_mask))
        return x + self.drop(self.ff(self.ln3(x))), (k, v)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.register_buffer("pos", sinusoid(cfg.max_len, cfg.d_model), persistent=False)
        self.enc = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_enc_layer))
        self.dec = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_dec_layer))
        self.enc_ln, self.dec_ln = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.scale = math.sqrt(cfg.d_model)
        nn.init.normal_(self.embed.weight, std=cfg.d_model**-0.5)

    def _embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = ids.shape[1]
        return self.drop(self.embed(ids) * self.scale + self.pos[offset : offset + T])

    @staticmethod
    def _mask(src_mask: torch.Tensor) -> torch.Tensor:
        return src_mask[:, None, None, :]  # (B, 1, 1, S) bool, True = attend

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> dict:
        x = self._embed(src)  # (B, S, d_model)
        m = self._mask(src_mask)
        for layer in self.enc:
            x = layer(x, m)
        x = self.enc_ln(x)
        kv = [layer.cross.project_kv(x) for layer in self.dec]
        return {"kv": kv, "mask": m}

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(self.dec_ln(h), self.embed.weight)  # (B, T, vocab)

    def forward(self, src, src_mask, tgt_in) -> torch.Tensor:
        return self.decode_all(self.encode(src, src_mask), tgt_in)

    def decode_all(self, memory: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of whole target rows against an encoded memory."""
        x = self._embed(tgt_in)
        for layer, kv in zip(self.dec, memory["kv"]):
            x, _ = layer(x, kv, memory["mask"])
        return self.logits(x)

    def packed_states(self, src: list[list[int]], tgt_in: list[list[int]]) -> torch.Tensor:
        """Teacher-forced decoder states of several (source, target) rows packed into one
        sequence without padding: (sum of target lengths, d_model), rows in order.

        Each token keeps its position within its row; block masks keep rows apart
        (attention within a row, causal on the target side, each target row attending to
        its own source row). A single source row serves every target (scoring several
        codes for one intent). The same maths as padded rows, but the per-token work
        (every Linear, norm, the output projection) skips padding, and a dynamic int8
        matmul's input scale comes from real tokens only."""
        shared = len(src) == 1
        if not shared and len(src) != len(tgt_in):
            raise ValueError("one source row, or one per target row")

        def layout(rows):
            lens = torch.tensor([len(r) for r in rows])
            seg = torch.repeat_interleave(torch.arange(len(rows)), lens)
            starts = torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
            pos = torch.arange(int(lens.sum())) - starts
            return torch.tensor([i for r in rows for i in r]), seg, pos

        s_ids, s_seg, s_pos = layout(src)
        t_ids, t_seg, t_pos = layout(tgt_in)
        x = self.drop(self.embed(s_ids) * self.scale + self.pos[s_pos]).unsqueeze(0)  # (1, Ns, d)
        enc_mask = None if shared else (s_seg[:, None] == s_seg[None, :])[None, None]
        for layer in self.enc:
            x = layer(x, enc_mask)
        x = self.enc_ln(x)
        cross = None if shared else (t_seg[:, None] == s_seg[None, :])[None, None]
        self_mask = ((t_seg[:, None] == t_seg[None, :]) & (t_pos[:, None] >= t_pos[None, :]))[None, None]
        y = self.drop(self.embed(t_ids) * self.scale + self.pos[t_pos]).unsqueeze(0)
        for layer in self.dec:
            y, _ = layer(y, layer.cross.project_kv(x), cross, self_mask=self_mask)
        return y[0]

    # --- incremental decoding protocol -----------------------------------------------
    def step(self, tgt_ids: torch.Tensor, memory: dict, cache: dict | None):
        t = 0 if cache is None else cache["t"]
        layers = [None] * len(self.dec) if cache is None else cache["layers"]
        x = self._embed(tgt_ids, offset=t)  # (B, 1, d_model)
        new = []
        for layer, kv, past in zip(self.dec, memory["kv"], layers):
            x, kv_self = layer(x, kv, memory["mask"], past if past is not None else (None, None))
            new.append(kv_self)
        return self.logits(x)[:, -1], {"t": t + tgt_ids.shape[1], "layers": new}

    @staticmethod
    def reorder_cache(cache: dict, beam_idx: torch.Tensor) -> dict:
        layers = [(k.index_select(0, beam_idx), v.index_select(0, beam_idx)) for k, v in cache["layers"]]
        return {"t": cache["t"], "layers": layers}

    @staticmethod
    def expand_memory(memory: dict, idx: torch.Tensor) -> dict:
        kv = [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in memory["kv"]]
        return {"kv": kv, "mask": memory["mask"].index_select(0, idx)}
