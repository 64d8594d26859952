"""The size study's latency probe (benchmarks/size_latency.py) on a toy shape."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_size_latency_measures_every_part_of_a_toy_shape():
    from benchmarks import size_latency

    row, bigger = size_latency.measure_all([("toy", 32, 2, 1, 1, 64), ("toy x2", 64, 2, 2, 2, 128, (32, 2, 1, 1, 64))],
                                           reps=2, vocab=300)
    # 300x32 tied embedding; one encoder and one decoder layer of d 32, d_ff 64, plus norms
    assert 0.02 < row["params_m"] < 0.1
    parts = [row["beam_ms"], row["forward_scoring_ms"], row["reverse_ms"]]
    assert all(p > 0 for p in parts)
    assert row["model_ms"] == pytest.approx(sum(parts), abs=0.2)
    assert bigger["params_m"] > row["params_m"] and bigger["shape"] == "toy x2"
    # the same-shape reverse model doubles the size; a named smaller one adds the toy's
    assert row["both_fp16_mb"] == pytest.approx(2 * row["fp16_mb"], abs=0.11)
    assert bigger["both_fp16_mb"] == pytest.approx(bigger["fp16_mb"] + row["fp16_mb"], abs=0.11)
