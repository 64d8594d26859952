"""benchmarks.rerank_fit's pure parts: halves for the cross-validation and the fit on them."""

from __future__ import annotations

from benchmarks.rerank_fit import _fold, best_weights, crossval, evaluate, only
from nl2code.rerank import RerankConfig


def _cand(code: str, recon: float, retrieved: bool = False) -> dict:
    return {"code": code, "danger": False,
            "f": {"norm_logprob": -1.0, "coverage": 1.0, "invented": 0, "log_length": 1.0, "reconstruction": recon,
                  "retrieved": retrieved, "similarity": 0.5 if retrieved else 0.0, "api_problems": []}}


def _data() -> dict:
    # the model's own candidate is wrong; the reverse model prefers the right one, so a
    # positive reconstruction weight wins everywhere
    py = [[_cand(f"wrong{i}()", -3.0), _cand(f"right{i}()", -0.5)] for i in range(8)]
    sh = [[_cand(f"bad{i}", -3.0), _cand(f"good{i}", -0.5)] for i in range(6)]
    cases = [{"id": f"p{i}", "lang": "python", "style": "free", "leaked": False} for i in range(8)]
    cases += [{"id": f"s{i}", "lang": "bash", "style": "conala", "leaked": False} for i in range(6)]
    passed = {f"p{i}\0right{i}()": True for i in range(8)} | {f"s{i}\0good{i}": True for i in range(6)}
    return {"conala": {"refs": [f"right{i}()" for i in range(8)], "cands": py},
            "nl2bash": {"refs": [f"good{i}" for i in range(6)], "cands": sh},
            "exec": {"cases": cases, "cands": py + sh, "passed": passed}}


def test_halves_alternate_and_cover_everything():
    part = only(_data(), "python")
    a, b = _fold(part, "conala", 0), _fold(part, "conala", 1)
    assert a["conala"]["refs"] == [f"right{i}()" for i in (0, 2, 4, 6)]
    assert [c["id"] for c in b["exec"]["cases"]] == ["p1", "p3", "p5", "p7"]
    assert len(a["exec"]["cands"]) + len(b["exec"]["cands"]) == 8


def test_fit_and_crossval_find_the_reconstruction_weight():
    data = _data()
    for lang in ("python", "bash"):
        cfg = best_weights(only(data, lang), RerankConfig())
        assert cfg.w_reconstruction > 0
        assert evaluate(cfg, True, only(data, lang))["exec_pass@1_all"] == 100.0
        assert evaluate(RerankConfig(w_reconstruction=0.0), True, only(data, lang))["exec_pass@1_all"] == 0.0
    table = crossval(data, {lang: best_weights(only(data, lang), RerankConfig()) for lang in ("python", "bash")}).splitlines()
    assert len(table) == 6 and table[2].startswith("| python | 0 |") and table[5].startswith("| bash | 1 |")
    assert all(row.endswith("100.0 |") for row in table[2:])  # every half: BLEU / 100.0 both ways


def test_consensus_favours_the_candidate_the_beam_agrees_with():
    import copy

    from benchmarks.rerank_fit import consensus, ranked

    def beam(code: str, lp: float) -> dict:
        return dict(_cand(code, -1.0), f={**_cand(code, -1.0)["f"], "norm_logprob": lp})

    # the odd one out is the model's favourite by a little; three others agree with each other
    cands = [beam("zip(a, b)", -0.9), beam("sorted(xs, reverse=True)", -1.0),
             beam("sorted(xs, reverse=False)", -1.0), beam("sorted(xs)", -1.1), _cand("sorted(ys)", -1.0, True)]
    fresh = copy.deepcopy(cands)
    scores = [consensus(cands, i) for i in range(len(cands))]
    assert scores[0] < 0.3 < min(scores[1:4])
    cfg = RerankConfig(w_reconstruction=0.0)
    assert ranked(cands, cfg, False)[0]["code"] == "zip(a, b)"
    assert ranked(cands, cfg, False, w_consensus=1.0)[0]["code"] == "sorted(xs, reverse=True)"
    # a retrieved snippet is scored against the beam but never votes
    other = fresh[:4] + [_cand("sorted(xs, reverse=True) + zip", -1.0, True)]
    assert consensus(cands, 4) > 0 and consensus(other, 3) == scores[3]
