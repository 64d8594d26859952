"""History for the language server: generations are recorded (source "lsp"), and each
completion item carries the `nl2code.accept` command, which the client runs when the user
picks the item; the pick is recorded as accepted (what `nl2code train --from-history`
learns from). NL2CODE_LOG=0 turns both off. A history that cannot be written never fails
a completion: the server logs one warning line."""

from __future__ import annotations

import logging

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from nl2code import history

log = logging.getLogger(__name__)

ACCEPT = "nl2code.accept"


def record(intent: str, lang: str, cands, model, latency_ms: float) -> None:
    """Store a generation (called on the generation thread)."""
    if history.enabled():
        try:
            with history.History() as h:
                h.record("lsp", intent, lang, [c.to_dict() for c in cands], model=model, latency_ms=latency_ms)
        except Exception as exc:
            log.warning("history not recorded: %s", " ".join(str(exc).split()))


def command(intent: str, lang: str, index: int, code: str) -> types.Command:
    return types.Command(title="nl2code: accepted", command=ACCEPT,
                         arguments=[{"intent": intent, "lang": lang, "index": index, "code": code}])


def attach(items, cands, intent: str, lang: str):
    """Give each completion or inline item the accept command of its candidate."""
    if history.enabled():
        for i, (item, c) in enumerate(zip(items, cands)):
            item.command = command(" ".join(intent.split()), lang, i, c.code)
    return items


def cmd_accept(ls, *args) -> bool:
    """nl2code.accept({intent, lang, index, code}) -> whether it was recorded."""
    arg = args[0] if len(args) == 1 else None
    if not isinstance(arg, dict) or not all(isinstance(arg.get(k), str) for k in ("intent", "lang", "code")) \
            or not isinstance(arg.get("index"), int) or len(arg["code"]) > history.MAX_FIELD_CHARS:
        raise JsonRpcInvalidParams(f"{ACCEPT} takes one object {{intent, lang, index, code}}")
    if not history.enabled():
        return False
    try:
        with history.History() as h:
            h.accept_pair("lsp", arg["intent"], arg["lang"], arg["code"], arg["index"])
        return True
    except Exception as exc:
        log.warning("accepted completion not recorded: %s", " ".join(str(exc).split()))
        return False
