"""The classic baseline: bidirectional GRU encoder, GRU decoder with attention.

Bahdanau et al. 2015 / Luong et al. 2015 style, the seed design of neural code generation
(e.g. Ling et al. 2016). Attention is computed after the decoder GRU (Luong "general"), so
teacher-forced training runs the decoder GRU over the whole sequence at once. Output
projection is tied to the embedding like the transformer's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nl2code.config import ModelConfig


class GRUSeq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        H, E, L = cfg.rnn_hidden, cfg.d_model, cfg.rnn_layers
        self.embed = nn.Embedding(cfg.vocab_size, E)
        self.encoder = nn.GRU(E, H, num_layers=L, batch_first=True, bidirectional=True,
                              dropout=cfg.dropout if L > 1 else 0.0)
        self.enc_proj = nn.Linear(2 * H, H)
        self.init_h = nn.Linear(2 * H, H)
        self.decoder = nn.GRU(E, H, num_layers=L, batch_first=True, dropout=cfg.dropout if L > 1 else 0.0)
        self.attn = nn.Linear(H, H, bias=False)
        self.combine = nn.Linear(2 * H, E)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.embed.weight, std=E**-0.5)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> dict:
        lengths = src_mask.sum(1).clamp(min=1).cpu()
        x = self.drop(self.embed(src))  # (B, S, E)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        L = self.cfg.rnn_layers
        h = h.view(L, 2, src.shape[0], -1)  # (L, dir, B, H)
        h0 = torch.tanh(self.init_h(torch.cat([h[:, 0], h[:, 1]], dim=-1)))  # (L, B, H)
        return {"enc": self.enc_proj(out), "mask": src_mask, "h0": h0}  # enc: (B, S, H)

    def _attend(self, dec: torch.Tensor, memory: dict) -> torch.Tensor:
        scores = torch.bmm(self.attn(dec), memory["enc"].transpose(1, 2))  # (B, T, S)
        scores = scores.masked_fill(~memory["mask"][:, None, :], float("-inf"))
        ctx = torch.bmm(torch.softmax(scores, dim=-1), memory["enc"])  # (B, T, H)
        h = torch.tanh(self.combine(torch.cat([dec, ctx], dim=-1)))  # (B, T, E)
        return F.linear(self.drop(h), self.embed.weight)  # (B, T, vocab)

    def forward(self, src, src_mask, tgt_in) -> torch.Tensor:
        memory = self.encode(src, src_mask)
        dec, _ = self.decoder(self.drop(self.embed(tgt_in)), memory["h0"].contiguous())
        return self._attend(dec, memory)

    def step(self, tgt_ids: torch.Tensor, memory: dict, cache: dict | None):
        h = memory["h0"].contiguous() if cache is None else cache["h"]
        dec, h = self.decoder(self.embed(tgt_ids), h)
        return self._attend(dec, memory)[:, -1], {"h": h}

    @staticmethod
    def reorder_cache(cache: dict, beam_idx: torch.Tensor) -> dict:
        return {"h": cache["h"].index_select(1, beam_idx)}

    @staticmethod
    def expand_memory(memory: dict, idx: torch.Tensor) -> dict:
        return {"enc": memory["enc"].index_select(0, idx), "mask": memory["mask"].index_select(0, idx),
                "h0": memory["h0"].index_select(1, idx)}
