"""End-to-end tests of nl2code-lsp: the real server process driven by pytest-lsp.

Clients announce the real capabilities of Neovim and VS Code, and any reply that breaks
the LSP spec for those capabilities fails the test. Read-only tests share one server per
client (module scope: the model loads once); tests that change settings, race the model
load or break the model get a server of their own. The model is the session's tiny_model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import threading
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from nl2code.rerank import Candidate
from nl2code.syntax import check

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("nl2code_lsp") is None:  # not pip-installed: use the checkout's
    sys.path.insert(0, str(ROOT / "lsp"))

from nl2code_lsp.host import ModelHost
from nl2code_lsp.settings import Settings, merge, section_of
from nl2code_lsp.text import (
    LANGUAGES, comment_text, completion_target, indent_block, language_for, lines_around, selection_target,
)

CLIENTS = ["neovim", "visual_studio_code"]
SORT = "sort list `xs` in descending order"
LS = "list all files in the current directory"
SQUARE = "define a function that returns the square of x"

pytestmark = pytest.mark.filterwarnings("error::pytest_lsp.LspSpecificationWarning")
aio = pytest.mark.asyncio(loop_scope="module")  # one event loop for the module-scoped servers


def server_config(home: Path) -> ClientServerConfig:
    """Run the server from this checkout (not necessarily pip-installed yet)."""
    path = [str(ROOT), str(ROOT / "lsp")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "NL2CODE_HOME": str(home)}
    env.pop("NL2CODE_MODEL", None)
    return ClientServerConfig(server_command=[sys.executable, "-m", "nl2code_lsp"], server_env=env)


async def start(home: Path, client: str, options: dict) -> LanguageClient:
    lsp = await server_config(home).start()
    result = await lsp.initialize_session(types.InitializeParams(
        capabilities=client_capabilities(client), initialization_options=options))
    lsp.server_capabilities = result.capabilities
    return lsp


async def stop(lsp: LanguageClient) -> None:
    await lsp.shutdown_session()
    await lsp.stop()


def settings_for(model: Path, **extra) -> dict:
    # maxLatencyMs 0: a busy CI machine must not turn a slow answer into an empty one
    return {"nl2code": {"modelPath": str(model), "maxLatencyMs": 0, **extra}}


_docs = iter(range(10**6))


def open_doc(lsp: LanguageClient, text: str, language_id: str = "python") -> str:
    uri = f"file:///tmp/nl2code-test/doc{next(_docs)}.{'py' if language_id == 'python' else 'sh'}"
    lsp.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)))
    return uri


async def complete(lsp: LanguageClient, uri: str, line: int, character: int) -> types.CompletionList:
    result = await lsp.text_document_completion_async(types.CompletionParams(
        types.TextDocumentIdentifier(uri), types.Position(line, character)))
    assert isinstance(result, types.CompletionList)
    return result


def apply(text: str, rng: types.Range, new: str) -> str:
    """Apply one edit (ASCII text, so columns are characters)."""
    lines = text.split("\n")
    start = sum(len(ln) + 1 for ln in lines[: rng.start.line]) + rng.start.character
    end = sum(len(ln) + 1 for ln in lines[: rng.end.line]) + rng.end.character
    return text[:start] + new + text[end:]


async def until(predicate, timeout: float = 10) -> None:
    """Wait for something the server sends on its own (a log message, a progress end)."""
    async def poll():
        while not predicate():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=CLIENTS)
async def lsp(request, tiny_model, tmp_path_factory):
    client = await start(tmp_path_factory.mktemp("home"), request.param, settings_for(tiny_model))
    yield client
    await stop(client)


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(tiny_model, tmp_path):
    """A server of this test's own (Neovim's capabilities), just initialized."""
    client = await start(tmp_path / "home", "neovim", settings_for(tiny_model))
    yield client
    await stop(client)


# -- pure helpers -----------------------------------------------------------------------

def test_text_helpers():
    py = LANGUAGES["python"]
    assert lines_around("a\r\nb\nc", 1) == (0, ["a", "b", "c"])
    assert lines_around("a\nb", 5) == (4, [])
    assert comment_text("    ## sort it ", py) == "sort it"
    assert comment_text("#!/usr/bin/env python", py) is None
    assert comment_text("x = 1  # not an intent", py) is None
    assert indent_block("def f():\n    return 1\n\nf()", "  ") == "  def f():\n      return 1\n\n  f()"
    assert language_for("shellscript", ("python", "bash")).name == "bash"
    assert language_for("python", ("bash",)) is None and language_for("rust", ("python",)) is None
    src = "x = 1\n# one\n# two\n\n"
    assert completion_target(src, 3, py).comment_line == 2
    assert completion_target(src, 0, py) is None
    assert selection_target(src, 0, 3, py).intent == "one two"


def test_settings_merge():
    s, warnings = merge(Settings(), {"n": 2, "beam": 0, "enabledLanguages": ["shellscript"], "colour": "red",
                                      "serverPath": "nl2code-lsp", "trace": {"server": "off"}})
    assert (s.n, s.beam, s.enabled_languages) == (2, Settings().beam, ("bash",))
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert section_of({"nl2code": {"n": 1}}) == {"n": 1} and section_of(None) is None


class BlockingGenerator:
    """Stands in for nl2code's Generator: each call blocks until the test releases it."""

    def __init__(self):
        self.calls: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def generate(self, intent, lang, n, beam, max_latency_ms=0):
        self.calls.append(intent)
        self.started.set()
        self.release.wait(10)
        return [Candidate(intent.upper(), lang, 1.0, -1.0, True)]


@aio
async def test_host_supersedes_cancels_and_caches():
    host, gen, s = ModelHost(), BlockingGenerator(), Settings()
    first = asyncio.ensure_future(host.generate(gen, "a", "python", s, supersede=("doc", "completion")))
    assert await asyncio.to_thread(gen.started.wait, 10)  # "a" is running, the thread is busy
    queued = asyncio.ensure_future(host.generate(gen, "b", "python", s, supersede=("doc", "inline")))
    await asyncio.sleep(0)
    queued.cancel()  # $/cancelRequest while queued: "b" must never run
    with pytest.raises(asyncio.CancelledError):
        await queued
    newer = asyncio.ensure_future(host.generate(gen, "c", "python", s, supersede=("doc", "completion")))
    assert await first == []  # superseded: answered at once, without waiting for "a"
    gen.release.set()
    assert [c.code for c in await newer] == ["C"]
    assert gen.calls == ["a", "c"]
    assert (await host.generate(gen, "c", "python", s))[0].code == "C" and gen.calls == ["a", "c"]  # cached
    gen.release.clear()
    assert await host.generate(gen, "d", "python", s, timeout=0.05) is None  # over budget
    gen.release.set()
    await until(lambda: host.cached("d", "python", s) is not None)
    host.shutdown()


# -- the server ---------------------------------------------------------------------------

@aio
async def test_capabilities(lsp: LanguageClient):
    caps = lsp.server_capabilities
    assert caps.completion_provider is not None and caps.inline_completion_provider is not None
    assert caps.code_action_provider.resolve_provider
    assert list(caps.execute_command_provider.commands) == ["nl2code.generate", "nl2code.accept"]


@aio
async def test_completion_on_comment_line(lsp: LanguageClient):
    text = f"xs = [3, 1, 2]\n# {SORT}\nprint(xs)\n"
    uri = open_doc(lsp, text)
    result = await complete(lsp, uri, 1, len(SORT) + 2)
    assert result.items and len(result.items) <= Settings().n
    best = result.items[0]
    assert best.text_edit.new_text == "\nxs.sort(reverse=True)"
    assert best.text_edit.range.start == types.Position(1, len(SORT) + 2)
    assert "score" in best.detail
    for item in result.items:
        edited = apply(text, item.text_edit.range, item.text_edit.new_text)
        assert edited.startswith(f"xs = [3, 1, 2]\n# {SORT}\n") and check(edited, "python").ok


@aio
async def test_completion_keeps_text_after_cursor_and_reindents(lsp: LanguageClient):
    text = f"class A:\n    # {SQUARE}\n"
    uri = open_doc(lsp, text)
    result = await complete(lsp, uri, 1, 6)  # cursor inside the comment
    edit = result.items[0].text_edit
    assert edit.new_text == f"{SQUARE}\n    def square(x):\n        return x * x"
    assert check(apply(text, edit.range, edit.new_text), "python").ok


@aio
async def test_completion_on_line_after_comment(lsp: LanguageClient):
    text = f"def f(xs):\n    # {SORT}\n    \n    return xs\n"
    uri = open_doc(lsp, text)
    result = await complete(lsp, uri, 2, 4)
    edit = result.items[0].text_edit
    assert edit.range == types.Range(types.Position(2, 0), types.Position(2, 4))
    assert edit.new_text == "    xs.sort(reverse=True)"
    assert check(apply(text, edit.range, edit.new_text), "python").ok


@aio
async def test_empty_results_are_not_errors(lsp: LanguageClient):
    uri = open_doc(lsp, "x = 1  # a trailing comment\n#!/bin/sh\n")
    assert (await complete(lsp, uri, 0, 5)).items == ()
    assert (await complete(lsp, uri, 1, 3)).items == ()
    assert (await complete(lsp, uri, 99, 0)).items == ()  # past the end
    unknown = "file:///tmp/nl2code-test/never-opened.py"
    assert (await complete(lsp, unknown, 0, 0)).items == ()
    inline = await lsp.text_document_inline_completion_async(types.InlineCompletionParams(
        context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
        text_document=types.TextDocumentIdentifier(unknown), position=types.Position(0, 0)))
    assert inline.items == ()
    actions = await lsp.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(unknown), types.Range(types.Position(0, 0), types.Position(0, 0)),
        types.CodeActionContext(diagnostics=[])))
    assert not actions
    text_uri = open_doc(lsp, "# list all files\n", "plaintext")
    assert (await complete(lsp, text_uri, 0, 5)).items == ()


@aio
async def test_inline_completion_bash(lsp: LanguageClient):
    text = f"#!/bin/bash\n# {LS}"
    uri = open_doc(lsp, text, "shellscript")
    result = await lsp.text_document_inline_completion_async(types.InlineCompletionParams(
        context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(1, len(LS) + 2)))
    assert result.items and result.items[0].insert_text == "\nls -la"
    for item in result.items:
        assert check(apply(text, item.range, item.insert_text), "bash").ok


@aio
async def test_code_action_inserts_best_candidate(lsp: LanguageClient):
    text = f"xs = [1]\n# {SORT}\nprint(xs)\n"
    uri = open_doc(lsp, text)
    actions = await lsp.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), types.Range(types.Position(1, 0), types.Position(2, 0)),
        types.CodeActionContext(diagnostics=[])))
    assert [a.title for a in actions] == ["nl2code: generate code from comment"]
    action = actions[0]
    if action.edit is None:  # both clients resolve the edit lazily
        action = await lsp.code_action_resolve_async(action)
    (edit,) = action.edit.changes[uri]
    assert apply(text, edit.range, edit.new_text) == f"xs = [1]\n# {SORT}\nxs.sort(reverse=True)\nprint(xs)\n"
    none = await lsp.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), types.Range(types.Position(0, 0), types.Position(0, 3)),
        types.CodeActionContext(diagnostics=[])))
    assert not none


@aio
async def test_execute_command(lsp: LanguageClient):
    result = await lsp.workspace_execute_command_async(types.ExecuteCommandParams(
        command="nl2code.generate", arguments=[LS, "sh", 2]))
    assert 1 <= len(result) <= 2 and result[0]["code"] == "ls -la"
    assert set(result[0]) >= {"code", "score", "logprob", "parses", "danger"}
    with pytest.raises(JsonRpcInvalidParams, match="unknown language"):
        await lsp.workspace_execute_command_async(types.ExecuteCommandParams(
            command="nl2code.generate", arguments=[LS, "cobol"]))
    with pytest.raises(JsonRpcInvalidParams, match="empty intent"):
        await lsp.workspace_execute_command_async(types.ExecuteCommandParams(
            command="nl2code.generate", arguments=["   ", "python"]))


@pytest.mark.parametrize("megabytes", [1, 5])
@aio
async def test_large_document(lsp: LanguageClient, megabytes: int):
    filler = "value = compute(value)  # keep going\n" * (megabytes * 2**20 // 37 + 1)
    text = filler + f"# {SORT}\n" + filler
    line = filler.count("\n")
    uri = open_doc(lsp, text)
    result = await complete(lsp, uri, line, len(SORT) + 2)
    assert result.items[0].text_edit.new_text == "\nxs.sort(reverse=True)"


@aio
async def test_newer_request_supersedes_and_cancel_is_honoured(lsp: LanguageClient):
    intents = ["reverse list `xs`", "get the length of list `xs`", "sum the numbers in list `nums`"]
    uri = open_doc(lsp, "".join(f"# {i}\n" for i in intents))
    params = [types.CompletionParams(types.TextDocumentIdentifier(uri), types.Position(k, len(i) + 2))
              for k, i in enumerate(intents)]
    cancelled = asyncio.ensure_future(
        lsp.protocol.send_request_async(types.TEXT_DOCUMENT_COMPLETION, params[0], msg_id="cancel-me"))
    await asyncio.sleep(0)
    lsp.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
    older = lsp.text_document_completion_async(params[1])
    newer = await lsp.text_document_completion_async(params[2])
    assert newer.items[0].text_edit.new_text == "\nsum(nums)"
    try:  # the cancel may arrive after the answer: either outcome is in the spec
        await cancelled
    except JsonRpcRequestCancelled:
        pass
    assert isinstance(await older, types.CompletionList)  # empty when superseded, never an error


@aio
async def test_early_requests_wait_for_the_model_and_can_be_cancelled(fresh: LanguageClient):
    """Sent right after `initialized`, long before the model has loaded."""
    uri = open_doc(fresh, f"# {SORT}\n")
    params = types.CompletionParams(types.TextDocumentIdentifier(uri), types.Position(0, len(SORT) + 2))
    cancelled = asyncio.ensure_future(
        fresh.protocol.send_request_async(types.TEXT_DOCUMENT_COMPLETION, params, msg_id="early"))
    waiting = asyncio.ensure_future(fresh.text_document_completion_async(params))
    await asyncio.sleep(0)  # both requests are on their way
    fresh.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="early"))
    with pytest.raises(JsonRpcRequestCancelled):
        await cancelled
    result = await waiting
    assert result.items[0].text_edit.new_text == "\nxs.sort(reverse=True)"
    (reports,) = fresh.progress_reports.values()
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    await until(lambda: isinstance(reports[-1], types.WorkDoneProgressEnd))


@aio
async def test_configuration_change(fresh: LanguageClient):
    uri = open_doc(fresh, f"# {LS}\n", "shellscript")
    assert len((await complete(fresh, uri, 0, len(LS) + 2)).items) > 1
    fresh.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"nl2code": {"n": 1}}))
    assert len((await complete(fresh, uri, 0, len(LS) + 2)).items) == 1
    # pull model: settings null, the server asks for workspace/configuration
    fresh.set_configuration({"n": 2, "beam": 3, "bogus": 1}, section="nl2code")
    fresh.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    await until(lambda: any("bogus" in m.message for m in fresh.log_messages))
    assert len((await complete(fresh, uri, 0, len(LS) + 2)).items) == 2
    fresh.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"nl2code": {"enabledLanguages": ["python"]}}))
    assert (await complete(fresh, uri, 0, len(LS) + 2)).items == ()


@aio
async def test_broken_model_is_an_error_response_not_a_dead_server(tiny_model, tmp_path):
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    lsp = await start(tmp_path / "home", "visual_studio_code", settings_for(broken))
    try:
        uri = open_doc(lsp, f"# {SORT}\n")
        with pytest.raises(JsonRpcException) as err:
            await complete(lsp, uri, 0, len(SORT) + 2)
        assert err.value.code == types.LSPErrorCodes.RequestFailed
        assert str(broken) in err.value.message and "\n" not in err.value.message
        await until(lambda: any(m.type == types.MessageType.Error for m in lsp.messages))
        # fixing the setting brings it back
        lsp.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"nl2code": {"modelPath": str(tiny_model)}}))
        assert (await complete(lsp, uri, 0, len(SORT) + 2)).items
    finally:
        await stop(lsp)


@aio
async def test_generations_and_accepted_completions_go_to_the_history(tiny_model, tmp_path):
    from nl2code.history import History

    home = tmp_path / "home"
    client = await start(home, "visual_studio_code", settings_for(tiny_model))
    try:
        uri = open_doc(client, f"# {SORT}\n")
        result = await complete(client, uri, 0, len(SORT) + 2)
        second = result.items[1]
        assert second.command.command == "nl2code.accept"
        arg = second.command.arguments[0]
        assert (arg["intent"], arg["lang"], arg["index"]) == (SORT, "python", 1)
        assert second.text_edit.new_text == "\n" + arg["code"]
        with History(home / "history.db") as h:
            (rec,) = h.recent(5)
            assert rec.source == "lsp" and rec.intent == SORT and not rec.accepted
            assert [c["code"] for c in rec.candidates] == [i.text_edit.new_text[1:] for i in result.items]
        # the client runs the item's command when the user picks it
        done = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=second.command.command, arguments=second.command.arguments))
        assert done is True
        with History(home / "history.db") as h:
            (rec,) = h.recent(5)
            assert rec.accepted and rec.chosen == 1 and rec.chosen_code == arg["code"]
        with pytest.raises(JsonRpcException, match="nl2code.accept takes"):
            await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="nl2code.accept", arguments=["not an object"]))
    finally:
        await stop(client)
