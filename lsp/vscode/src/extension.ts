// nl2code for VS Code: starts `nl2code-lsp` and connects it to Python and shell editors.
//
// The server is found by src/discovery.ts (setting, PATH, the workspace's .venv/venv);
// when it is missing or exits during start-up the user gets one message with a button to
// the setting, not a restart loop.
//
// The server does the work: completion and inline completion on an intent comment, a code
// action, and the `nl2code.generate` command. The client registers that command for the
// server; when it is run from the Command Palette (no arguments) the middleware below
// takes the intent from the selection or the current comment line, asks the server, and
// inserts the candidate the user picks.

import * as vscode from "vscode";
import {
  CloseAction,
  CloseHandlerResult,
  DidChangeConfigurationNotification,
  ErrorAction,
  ErrorHandler,
  ErrorHandlerResult,
  LanguageClient,
  LanguageClientOptions,
  Message,
  ServerOptions,
} from "vscode-languageclient/node";

import { ServerCommand, explicitProblem, findServer } from "./discovery";

const SECTION = "nl2code";
const LANGUAGES = ["python", "shellscript"];
const SERVER_KEYS = ["modelPath", "n", "beam", "maxLatencyMs", "enabledLanguages"];
const OPEN_SETTING = "Open Setting";
const SHOW_OUTPUT = "Show Output";

let client: LanguageClient | undefined;

interface CandidateDict {
  code: string;
  score: number;
  parses: boolean;
  danger: string[];
}

function serverSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const settings: Record<string, unknown> = {};
  for (const key of SERVER_KEYS) {
    settings[key] = config.get(key);
  }
  return settings;
}

/** The intent under the cursor: the selection, else the current line, minus comment marks. */
function intentAt(editor: vscode.TextEditor): string {
  const { document, selection } = editor;
  const text = selection.isEmpty ? document.lineAt(selection.active.line).text : document.getText(selection);
  return text
    .split(/\r?\n/)
    .map((line) => line.trim().replace(/^#+\s*/, ""))
    .filter((line) => line.length > 0)
    .join(" ");
}

async function generateInEditor(
  next: (command: string, args: unknown[]) => vscode.ProviderResult<unknown>,
): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage("nl2code: open a Python or shell file first.");
    return;
  }
  let intent = intentAt(editor);
  if (!intent) {
    intent = (await vscode.window.showInputBox({ prompt: "What should the code do?" })) ?? "";
  }
  if (!intent.trim()) {
    return;
  }
  const lang = editor.document.languageId;
  const candidates = (await next("nl2code.generate", [intent, lang])) as CandidateDict[] | undefined;
  if (!candidates || candidates.length === 0) {
    void vscode.window.showInformationMessage("nl2code: no parseable candidate; try rephrasing the intent.");
    return;
  }
  const picked = await vscode.window.showQuickPick(
    candidates.map((c) => ({
      label: c.code.split("\n")[0],
      description: `score ${c.score.toFixed(2)}${c.danger.length ? " ⚠ " + c.danger.join(", ") : ""}`,
      detail: c.code.includes("\n") ? c.code : undefined,
      code: c.code,
    })),
    { placeHolder: intent },
  );
  if (!picked) {
    return;
  }
  const line = editor.document.lineAt(editor.selection.end.line);
  const indent = line.text.slice(0, line.firstNonWhitespaceCharacterIndex);
  const block = picked.code
    .split("\n")
    .map((l) => (l.trim() ? indent + l : ""))
    .join("\n");
  await editor.edit((edit) => edit.insert(line.range.end, "\n" + block));
}

/**
 * Opens the Settings editor at nl2code.serverPath: in a remote window (code-server, Remote -
 * SSH, WSL, containers) on its Remote tab, the only place a machine setting applies there
 * (the User tab does not even list it).
 */
function openServerSetting(): void {
  const query = `${SECTION}.serverPath`;
  if (vscode.env.remoteName) {
    void vscode.commands.executeCommand("workbench.action.openRemoteSettings", { query });
  } else {
    void vscode.commands.executeCommand("workbench.action.openSettings", query);
  }
}

/** An error message with a button to the setting (and one to the server's output). */
function reportProblem(message: string, output?: vscode.OutputChannel): void {
  const buttons = output ? [OPEN_SETTING, SHOW_OUTPUT] : [OPEN_SETTING];
  void vscode.window.showErrorMessage(message, ...buttons).then((choice) => {
    if (choice === OPEN_SETTING) {
      openServerSetting();
    } else if (choice === SHOW_OUTPUT) {
      output?.show(true);
    }
  });
}

/**
 * Restarts a server that crashed after it had started (at most 4 times in 3 minutes), but
 * never one that exited before it finished starting: that is a wrong command or a broken
 * install, and restarting it only repeats the failure (startClient reports it once).
 */
class ErrorHandlerOnce implements ErrorHandler {
  running = false;
  private crashes: number[] = [];

  error(_error: Error, _message: Message | undefined, count: number | undefined): ErrorHandlerResult {
    if (!this.running) {
      // e.g. EPIPE writing to a process that already exited: closed() follows, start() fails
      return { action: ErrorAction.Continue, handled: true };
    }
    return { action: count !== undefined && count <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown };
  }

  closed(): CloseHandlerResult {
    if (!this.running) {
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    const now = Date.now();
    this.crashes = this.crashes.filter((t) => now - t < 3 * 60 * 1000);
    this.crashes.push(now);
    if (this.crashes.length > 4) {
      return {
        action: CloseAction.DoNotRestart,
        message: "nl2code: the language server crashed 5 times in 3 minutes and will not be restarted (see Output › nl2code).",
      };
    }
    return { action: CloseAction.Restart, handled: true };
  }
}

/**
 * A LanguageClient that, while starting, writes its errors to the output channel without
 * a notification of its own ("couldn't create connection to server" and the like):
 * startClient shows one message for a failed start, with buttons to the setting and output.
 */
class Nl2CodeClient extends LanguageClient {
  constructor(
    serverOptions: ServerOptions,
    clientOptions: LanguageClientOptions,
    private readonly errors: ErrorHandlerOnce,
  ) {
    super(SECTION, "nl2code", serverOptions, clientOptions);
  }

  override error(message: string, data?: unknown, showNotification: boolean | "force" = true): void {
    super.error(message, data, this.errors.running ? showNotification : false);
  }
}

function createClient(server: ServerCommand, errorHandler: ErrorHandlerOnce): LanguageClient {
  // No `transport`: the client then talks to the process over stdin/stdout without adding
  // arguments (TransportKind.stdio would append `--stdio`, which older nl2code-lsp releases reject).
  const serverOptions: ServerOptions = {
    run: { command: server.command, args: server.args },
    debug: { command: server.command, args: [...server.args, "--log-level", "DEBUG"] },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.flatMap((language) => [
      { scheme: "file", language },
      { scheme: "untitled", language },
    ]),
    initializationOptions: { [SECTION]: serverSettings() },
    // Settings changes are sent by activate()'s listener, not by `synchronize`: that one
    // would also fire for a client being replaced and try to restart it.
    errorHandler,
    initializationFailedHandler: () => false, // no retry; startClient reports the failure once
    middleware: {
      executeCommand: async (cmd, cmdArgs, next) => {
        if (cmd === "nl2code.generate" && cmdArgs.length === 0) {
          return generateInEditor(next);
        }
        return next(cmd, cmdArgs);
      },
    },
  };
  return new Nl2CodeClient(serverOptions, clientOptions, errorHandler);
}

/** The workspace folders whose virtual environments may be searched (none when untrusted). */
function trustedFolders(): string[] {
  if (!vscode.workspace.isTrusted) {
    return [];
  }
  return (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === "file").map((f) => f.uri.fsPath);
}

async function startClient(): Promise<void> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const serverPath = config.get<string>("serverPath")?.trim() ?? "";
  const serverArgs = config.get<string[]>("serverArgs") ?? [];
  if (serverPath) {
    const problem = await explicitProblem(serverPath, process.env.PATH);
    if (problem) {
      reportProblem(`nl2code: cannot start the language server: nl2code.serverPath is set, but ${problem}.`);
      return;
    }
  }
  const server = await findServer(serverPath, serverArgs, process.env.PATH, trustedFolders());
  if (!server) {
    const where = vscode.workspace.isTrusted
      ? "not set in nl2code.serverPath, not on PATH, not in the workspace's .venv or venv"
      : "not set in nl2code.serverPath, not on PATH; the workspace's .venv/venv is not searched until you trust it";
    reportProblem(
      `nl2code: cannot find the language server nl2code-lsp (${where}). ` +
        "Install nl2code (pip install . in its repository) or set nl2code.serverPath to its full path.",
    );
    return;
  }
  const errorHandler = new ErrorHandlerOnce();
  const started = createClient(server, errorHandler);
  client = started;
  try {
    await started.start();
    errorHandler.running = true;
    started.info(`nl2code-lsp started: ${[server.command, ...server.args].join(" ")} (from ${server.source})`);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    reportProblem(
      `nl2code: the language server ${server.command} (from ${server.source}) did not start (${detail}); ` +
        "its messages are in Output › nl2code.",
      started.outputChannel,
    );
  }
}

let pending: Promise<void> = Promise.resolve();

/** Stop the current client (if any) and start anew; calls run one after the other. */
function restartClient(): Promise<void> {
  pending = pending.then(async () => {
    const old = client;
    client = undefined;
    await old?.dispose().catch(() => undefined);
    await startClient();
  }).catch((err) => reportProblem(`nl2code: could not start the language server: ${err}`));
  return pending;
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration(`${SECTION}.serverPath`) || event.affectsConfiguration(`${SECTION}.serverArgs`)) {
        await restartClient();
      } else if (event.affectsConfiguration(SECTION) && client?.isRunning()) {
        await client
          .sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: serverSettings() } })
          .catch((err) => client?.error("Sending the changed settings failed", err));
      }
    }),
    vscode.workspace.onDidGrantWorkspaceTrust(async () => {
      if (!client?.isRunning()) {
        await restartClient(); // the workspace's virtual environment may now be searched
      }
    }),
    { dispose: () => void client?.stop() },
  );
  await restartClient();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
