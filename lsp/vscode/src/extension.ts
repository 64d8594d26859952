// nl2code for VS Code: starts `nl2code-lsp` and connects it to Python and shell editors.
//
// The server does the work: completion and inline completion on an intent comment, a code
// action, and the `nl2code.generate` command. The client registers that command for the
// server; when it is run from the Command Palette (no arguments) the middleware below
// takes the intent from the selection or the current comment line, asks the server, and
// inserts the candidate the user picks.

import * as vscode from "vscode";
import {
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  TransportKind,
} from "vscode-languageclient/node";

const SECTION = "nl2code";
const LANGUAGES = ["python", "shellscript"];
const SERVER_KEYS = ["modelPath", "n", "beam", "maxLatencyMs", "enabledLanguages"];

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

function createClient(): LanguageClient {
  const config = vscode.workspace.getConfiguration(SECTION);
  const command = config.get<string>("serverPath") || "nl2code-lsp";
  const args = config.get<string[]>("serverArgs") ?? [];
  const serverOptions: ServerOptions = {
    run: { command, args, transport: TransportKind.stdio },
    debug: { command, args: [...args, "--log-level", "DEBUG"], transport: TransportKind.stdio },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.flatMap((language) => [
      { scheme: "file", language },
      { scheme: "untitled", language },
    ]),
    initializationOptions: { [SECTION]: serverSettings() },
    synchronize: { configurationSection: SECTION },
    middleware: {
      executeCommand: async (cmd, cmdArgs, next) => {
        if (cmd === "nl2code.generate" && cmdArgs.length === 0) {
          return generateInEditor(next);
        }
        return next(cmd, cmdArgs);
      },
    },
  };
  return new LanguageClient(SECTION, "nl2code", serverOptions, clientOptions);
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  client = createClient();
  try {
    await client.start();
  } catch (err) {
    const command = vscode.workspace.getConfiguration(SECTION).get<string>("serverPath");
    void vscode.window.showErrorMessage(
      `nl2code: could not start the language server (${command}): ${err}. ` +
        "Install nl2code (pip install . in its repository) or set nl2code.serverPath.",
    );
  }
  context.subscriptions.push({ dispose: () => void client?.stop() });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration(`${SECTION}.serverPath`) || event.affectsConfiguration(`${SECTION}.serverArgs`)) {
        await client?.stop();
        await startClient(context);
      }
    }),
  );
  await startClient(context);
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
