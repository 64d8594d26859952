"""The nl2code language server: pygls handlers over one warm Generator.

Features: completion and inline completion on an intent comment (or the blank line after
it), a code action that inserts the best candidate under the selected comment lines, and
the `nl2code.generate` command (intent, lang[, n]) -> candidate dicts. Settings come from
initializationOptions and workspace/didChangeConfiguration (section "nl2code").

The model loads in a background thread after `initialized`, with work-done progress when
the client supports it. Requests that arrive earlier wait for it (bounded); generation
runs on its own thread, a newer request for the same document and method supersedes an
older one, and $/cancelRequest is honoured. Nothing a document contains is an error: an
unknown document, a line that is not a comment or an intent with no parseable candidate
all give an empty result. A model that fails to load is: an error response with a
one-line message, plus a window/showMessage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from urllib.parse import unquote

from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from nl2code.engine import clean_intent
from nl2code.errors import UsageError
from nl2code.syntax import canonical_lang

from nl2code_lsp import __version__, accept, convert, document, explain_action
from nl2code_lsp.host import ModelHost, ModelLoadError
from nl2code_lsp.pygls_fixes import Nl2CodeProtocol, QuietExpectedErrors, ResyncingStdin
from nl2code_lsp.settings import SECTION, Settings, merge, section_of
from nl2code_lsp.tcp import serve_one_client
from nl2code_lsp.text import LangSpec, Target, completion_target, language_for, selection_target

log = logging.getLogger(__name__)

MODEL_WAIT_S = 60.0  # longest a request waits for the model to finish loading
ACTION_TITLE = "nl2code: generate code from comment"
ACTION_KIND = types.CodeActionKind.RefactorRewrite
COMMAND = "nl2code.generate"


class Nl2CodeServer(LanguageServer):
    def __init__(self, model: str | None = None):
        super().__init__("nl2code-lsp", __version__, protocol_cls=Nl2CodeProtocol)
        self.settings = Settings()
        self.host = ModelHost(model)
        self.started = False  # set once `initialized` arrived and loading began
        self._tasks: set[asyncio.Task] = set()
        self.exit_code = 0  # LSP: `exit` without `shutdown` first ends the process with 1

    # -- settings and model --------------------------------------------------------------

    def supports(self, capability: str) -> bool:
        return bool(get_capability(self.client_capabilities, capability, False))

    def log_to_client(self, message: str, kind=types.MessageType.Info) -> None:
        log.log(logging.ERROR if kind == types.MessageType.Error else logging.INFO, message)
        self.window_log_message(types.LogMessageParams(kind, message))

    def apply_settings(self, raw) -> None:
        section = section_of(raw)
        if section is None:
            return
        self.settings, warnings = merge(self.settings, section)
        for w in warnings:
            self.log_to_client(w, types.MessageType.Warning)
        if self.started:
            self.start_loading()

    def start_loading(self) -> None:
        """Load the model the settings name, unless it is loaded or loading already."""
        self.started = True
        fut = self.host.load(self.settings)
        if fut is not None:
            task = asyncio.ensure_future(self._watch_loading(fut))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _watch_loading(self, fut) -> None:
        token = None
        if self.supports("window.work_done_progress"):
            token = f"nl2code-load-{uuid.uuid4().hex[:8]}"
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                    title="nl2code", message="loading the model", cancellable=False))
            except Exception:  # the client refused the token: load without a progress bar
                token = None
        try:
            gen = await asyncio.wrap_future(fut)
        except Exception as exc:
            if token:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message="model failed to load"))
            message = str(exc) if isinstance(exc, ModelLoadError) else f"nl2code: model failed to load: {exc}"
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
            self.log_to_client(message, types.MessageType.Error)
            return
        if token:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message="model ready"))
        self.log_to_client(f"nl2code: model ready ({gen.path})")

    async def model(self):
        """The Generator, or None if it is still loading after MODEL_WAIT_S."""
        self.start_loading()  # a no-op unless nothing, or another model, was loaded
        try:
            return await self.host.generator(MODEL_WAIT_S)
        except ModelLoadError as exc:
            raise JsonRpcException(str(exc), code=types.LSPErrorCodes.RequestFailed) from None

    async def candidates(self, intent: str, lang: str, *, supersede: tuple | None = None,
                         budget: float | None = None):
        """Ranked candidates ([] if none parse or superseded), or None if not ready in time."""
        intent = " ".join(intent.split())
        settings = self.settings
        if (hit := self.host.cached(intent, lang, settings)) is not None:
            return hit
        gen = await self.model()
        if gen is None:
            return None
        return await self.host.generate(gen, intent, lang, settings, supersede=supersede, timeout=budget)

    def budget(self) -> float | None:
        ms = self.settings.max_latency_ms
        return ms / 1000 if ms else None

    # -- documents -----------------------------------------------------------------------

    def document(self, uri: str):
        """An open document, or None (never read from disk: the editor's buffer is the truth)."""
        docs = self.workspace.text_documents
        return docs.get(uri) or docs.get(unquote(uri))

    def spec_for(self, doc) -> LangSpec | None:
        return language_for(doc.language_id, self.settings.enabled_languages) if doc else None


# -- handlers (thin: find the intent, ask for candidates, convert) ------------------------

def _completion_setup(ls: Nl2CodeServer, uri: str, position: types.Position):
    doc = ls.document(uri)
    spec = ls.spec_for(doc)
    if spec is None:
        return None
    target = completion_target(doc.source, position.line, spec)
    return (doc, spec, target) if target else None


async def _candidates_at(ls: Nl2CodeServer, spec: LangSpec, target: Target, uri: str, method: str):
    try:
        return await ls.candidates(target.intent, spec.name, supersede=(uri, method), budget=ls.budget())
    except UsageError:  # an intent the engine refuses (too long, language unknown to the model)
        return []


async def on_completion(ls: Nl2CodeServer, params: types.CompletionParams) -> types.CompletionList:
    found = _completion_setup(ls, params.text_document.uri, params.position)
    if found is None:
        return types.CompletionList(is_incomplete=False, items=[])
    doc, spec, target = found
    cands = await _candidates_at(ls, spec, target, doc.uri, "completion")
    if cands is None:  # still loading or slower than maxLatencyMs: ask again later
        return types.CompletionList(is_incomplete=True, items=[])
    markdown = types.MarkupKind.Markdown in (get_capability(
        ls.client_capabilities, "text_document.completion.completion_item.documentation_format", []) or [])
    items = convert.completion_items(cands, target, params.position, doc.position_codec, markdown)
    accept.attach(items, cands, target.intent, spec.name)  # the pick is recorded in the history
    return types.CompletionList(is_incomplete=False, items=items)


async def on_inline_completion(ls: Nl2CodeServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    found = _completion_setup(ls, params.text_document.uri, params.position)
    if found is None:
        return types.InlineCompletionList(items=[])
    doc, spec, target = found
    cands = await _candidates_at(ls, spec, target, doc.uri, "inline")
    items = convert.inline_items(cands or [], target, params.position, doc.position_codec)
    return types.InlineCompletionList(items=accept.attach(items, cands or [], target.intent, spec.name))


async def on_code_action(ls: Nl2CodeServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    only = params.context.only
    if only and not any(ACTION_KIND == k or ACTION_KIND.startswith(f"{k}.") for k in only):
        return []
    doc = ls.document(params.text_document.uri)
    spec = ls.spec_for(doc)
    if spec is None:
        return []
    start, end = params.range.start, params.range.end
    last = end.line - 1 if end.line > start.line and end.character == 0 else end.line
    target = selection_target(doc.source, start.line, last, spec)
    if target is None:
        return await _explain_actions(ls, doc, spec, params.range, start.line, last)
    data = {"uri": doc.uri, "start": start.line, "end": last}
    action = types.CodeAction(title=ACTION_TITLE, kind=ACTION_KIND, data=data)
    if "edit" in (get_capability(ls.client_capabilities, "text_document.code_action.resolve_support.properties", [])
                  or []):
        return [action]  # generation waits until the user picks the action
    action = await on_code_action_resolve(ls, action)
    return [action] if action.edit else []


async def _explain_actions(ls: Nl2CodeServer, doc, spec, rng: types.Range, first: int, last: int):
    """The "explain selection" action for a selection of code (a non-empty range)."""
    if rng.start == rng.end or explain_action.selected_code(doc.source.splitlines(), first, last, (spec.comment,)) is None:
        return []
    gen = await ls.model()
    if gen is None or gen.augment is None or not gen.augment.parts().get("explain"):
        return []  # only offered when the model carries a reverse model
    data = {"uri": doc.uri, "start": first, "end": last, "explain": True}
    action = types.CodeAction(title=explain_action.EXPLAIN_TITLE, kind=explain_action.EXPLAIN_KIND, data=data)
    if "edit" in (get_capability(ls.client_capabilities, "text_document.code_action.resolve_support.properties", [])
                  or []):
        return [action]
    action = await on_code_action_resolve(ls, action)
    return [action] if action.edit else []


async def _resolve_explain(ls: Nl2CodeServer, action: types.CodeAction, data: dict) -> types.CodeAction:
    doc = ls.document(data.get("uri", ""))
    spec = ls.spec_for(doc)
    if spec is None or not isinstance(data.get("start"), int) or not isinstance(data.get("end"), int):
        return action
    code = explain_action.selected_code(doc.source.splitlines(), data["start"], data["end"], (spec.comment,))
    gen = await ls.model()
    if code is None or gen is None:
        return action
    text = await explain_action.explanation(gen, code, spec.name)
    if not text:
        ls.window_show_message(types.ShowMessageParams(
            types.MessageType.Info, "nl2code: this model cannot explain code (no reverse model)"))
        return action
    first = doc.source.splitlines()[data["start"]]
    indent = first[: len(first) - len(first.lstrip())]
    action.edit = explain_action.comment_edit(doc.uri, data["start"], text, indent, spec.comment)
    return action


async def on_code_action_resolve(ls: Nl2CodeServer, action: types.CodeAction) -> types.CodeAction:
    data = action.data if isinstance(action.data, dict) else {}
    if data.get("explain"):
        return await _resolve_explain(ls, action, data)
    doc = ls.document(data.get("uri", ""))
    spec = ls.spec_for(doc)
    if spec is None or not isinstance(data.get("start"), int) or not isinstance(data.get("end"), int):
        return action
    target = selection_target(doc.source, data["start"], data["end"], spec)
    if target is None:  # the comment went away since the action was offered
        return action
    try:
        cands = await ls.candidates(target.intent, spec.name)
    except UsageError:
        cands = []
    if not cands:
        ls.window_show_message(types.ShowMessageParams(
            types.MessageType.Info, "nl2code: no parseable candidate for this comment; try rephrasing it"))
        return action
    action.edit = convert.insert_after(doc.uri, target, cands[0].code, doc.position_codec)
    return action


async def cmd_generate(ls: Nl2CodeServer, *args) -> list[dict]:
    """nl2code.generate(intent, lang="python", n=settings.n) -> [candidate dict, ...]."""
    if not args or not isinstance(args[0], str) or len(args) > 3:
        raise JsonRpcInvalidParams(f"{COMMAND} takes (intent, lang=\"python\", n=None)")
    intent = args[0]
    lang = args[1] if len(args) > 1 else "python"
    n = args[2] if len(args) > 2 else None
    try:
        lang = canonical_lang(str(lang))
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 20):
            raise UsageError("n must be a whole number between 1 and 20")
        settings = ls.settings
        if n is not None:
            settings = merge(settings, {"n": n})[0]
        gen = await ls.model()
        if gen is None:
            raise JsonRpcException("nl2code: the model is still loading; try again",
                                   code=types.LSPErrorCodes.RequestFailed)
        cands = await ls.host.generate(gen, clean_intent(intent), lang, settings)
    except UsageError as exc:
        raise JsonRpcInvalidParams(str(exc)) from None
    return [c.to_dict() for c in cands or []]


def on_initialize(ls: Nl2CodeServer, params: types.InitializeParams) -> None:
    document.install(ls.workspace)
    try:
        ls.apply_settings(params.initialization_options)
    except Exception as exc:  # bad options never fail `initialize`: defaults, and one line why
        ls.log_to_client(f"nl2code: initializationOptions ignored: {type(exc).__name__}: {exc}",
                         types.MessageType.Warning)


def on_initialized(ls: Nl2CodeServer, params: types.InitializedParams) -> None:
    ls.start_loading()


async def on_did_change_configuration(ls: Nl2CodeServer, params: types.DidChangeConfigurationParams) -> None:
    if section_of(params.settings) is not None:
        ls.apply_settings(params.settings)
    elif ls.supports("workspace.configuration"):  # the "pull" model: settings is null or {}
        result = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)]))
        if result and isinstance(result[0], dict):
            ls.apply_settings({SECTION: result[0]})


def on_did_close(ls: Nl2CodeServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.host.forget(params.text_document.uri)


def on_shutdown(ls: Nl2CodeServer, params: None) -> None:
    ls.shutdown_received = True
    ls.host.shutdown()


def on_exit(ls: Nl2CodeServer, params: None) -> None:
    # our own flag: the protocol's may not be set yet when a client sends shutdown and exit
    # back to back (VS Code does), and exit 1 after a clean stop reads as a crash there
    done = getattr(ls, "shutdown_received", False) or getattr(ls.protocol, "_shutdown", False)
    ls.exit_code = 0 if done else 1


def build_server(model: str | None = None) -> Nl2CodeServer:
    ls = Nl2CodeServer(model)
    ls.feature(types.INITIALIZE)(on_initialize)
    ls.feature(types.INITIALIZED)(on_initialized)
    ls.feature(types.SHUTDOWN)(on_shutdown)
    ls.feature(types.EXIT)(on_exit)
    ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)(on_did_close)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(on_did_change_configuration)
    ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))(on_completion)
    # Inline completion is advertised only when registered with options.
    ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(on_inline_completion)
    ls.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[ACTION_KIND], resolve_provider=True))(on_code_action)
    ls.feature(types.CODE_ACTION_RESOLVE)(on_code_action_resolve)
    ls.command(COMMAND)(cmd_generate)
    ls.command(accept.ACCEPT)(accept.cmd_accept)
    return ls


def _setup_logging(level: str) -> None:
    """Logs go to stderr (stdout carries the protocol)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nl2code-lsp %(levelname)s %(message)s"))
    handler.addFilter(QuietExpectedErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def run(model: str | None = None, tcp: str | None = None, log_level: str = "WARNING") -> None:
    """Serve on stdio, or on tcp ("HOST:PORT") for debugging. Blocks until the client exits."""
    host, port = None, None
    if tcp:
        host, _, port = tcp.rpartition(":")
        if not port.isdigit():
            raise UsageError(f"--tcp wants HOST:PORT, got {tcp!r}")
    _setup_logging(log_level)
    server = build_server(model)
    if tcp:
        serve_one_client(server, host or "127.0.0.1", int(port))
    else:
        server.start_io(stdin=ResyncingStdin(sys.stdin.buffer))
    if server.exit_code:
        sys.exit(server.exit_code)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nl2code-lsp", description="nl2code language server (stdio by default).")
    parser.add_argument("--stdio", action="store_true",
                        help="serve on stdin/stdout (the default; accepted because many clients send it)")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio (for debugging)")
    parser.add_argument("--model", metavar="PATH", help="model folder (default: NL2CODE_MODEL or the bundled model); "
                        "the editor's nl2code.modelPath setting overrides it")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level for stderr (default WARNING)")
    parser.add_argument("--version", action="version", version=f"nl2code-lsp {__version__}")
    args = parser.parse_args(argv)
    if args.stdio and args.tcp:
        parser.error("--stdio and --tcp exclude each other")
    try:
        run(args.model, args.tcp, args.log_level)
    except UsageError as exc:
        print(f"nl2code-lsp: {exc}", file=sys.stderr)
        sys.exit(2)
