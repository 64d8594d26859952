// Where the nl2code language server is: the nl2code.serverPath setting, else `nl2code-lsp`
// on PATH, else the workspace's virtual environment (.venv or venv): its `nl2code-lsp`
// script, or its Python interpreter when that interpreter can import nl2code_lsp.
//
// Nothing here depends on vscode, so the search order can be read (and tested) on its own.

import { execFile } from "node:child_process";
import { constants, promises as fs } from "node:fs";
import * as path from "node:path";

export const SERVER_NAME = "nl2code-lsp";
export const VENV_DIRS = [".venv", "venv"];

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where it was found, for messages: "nl2code.serverPath", "PATH", ".venv in <folder>". */
  source: string;
}

const WINDOWS = process.platform === "win32";
const BIN = WINDOWS ? "Scripts" : "bin";
const EXE = WINDOWS ? ".exe" : "";

/** A regular file this process may execute. */
export async function isExecutable(file: string): Promise<boolean> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) {
      return false;
    }
    await fs.access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first `name` on a PATH string, or undefined. */
export async function onPath(name: string, pathEnv: string | undefined): Promise<string | undefined> {
  for (const dir of (pathEnv ?? "").split(path.delimiter)) {
    if (dir && path.isAbsolute(dir)) {
      const file = path.join(dir, name + EXE);
      if (await isExecutable(file)) {
        return file;
      }
    }
  }
  return undefined;
}

/** Whether a Python interpreter can import nl2code_lsp (without importing it: fast). */
export function canImportServer(python: string, timeoutMs = 20000): Promise<boolean> {
  const probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('nl2code_lsp') is None)";
  return new Promise((resolve) => {
    execFile(python, ["-c", probe], { timeout: timeoutMs }, (error) => resolve(!error));
  });
}

/** The server in one workspace folder's virtual environments. */
export async function inVenv(folder: string): Promise<ServerCommand | undefined> {
  for (const venv of VENV_DIRS) {
    const script = path.join(folder, venv, BIN, SERVER_NAME + EXE);
    if (await isExecutable(script)) {
      return { command: script, args: [], source: `${venv} in ${folder}` };
    }
  }
  for (const venv of VENV_DIRS) {
    const python = path.join(folder, venv, BIN, "python" + EXE);
    if ((await isExecutable(python)) && (await canImportServer(python))) {
      return { command: python, args: ["-m", "nl2code_lsp"], source: `${venv} in ${folder}` };
    }
  }
  return undefined;
}

/**
 * Resolve the server command. `serverPath` is the user's explicit setting (undefined or ""
 * when not set); `folders` are the workspace folders to search, empty in an untrusted
 * workspace (its virtual environment is the workspace's code, not to be run unasked).
 * Returns undefined when nothing is found; an explicit setting is returned as given (a
 * bare command name is left to the PATH lookup of spawn, a missing file is reported by
 * `explicitProblem`).
 */
export async function findServer(
  serverPath: string | undefined,
  serverArgs: string[],
  pathEnv: string | undefined,
  folders: string[],
): Promise<ServerCommand | undefined> {
  if (serverPath) {
    return { command: serverPath, args: serverArgs, source: "nl2code.serverPath" };
  }
  const onThePath = await onPath(SERVER_NAME, pathEnv);
  if (onThePath) {
    return { command: onThePath, args: serverArgs, source: "PATH" };
  }
  for (const folder of folders) {
    const found = await inVenv(folder);
    if (found) {
      return { ...found, args: [...found.args, ...serverArgs] };
    }
  }
  return undefined;
}

/** Why an explicitly set serverPath cannot be started, or undefined when it looks fine. */
export async function explicitProblem(serverPath: string, pathEnv: string | undefined): Promise<string | undefined> {
  if (path.isAbsolute(serverPath) || serverPath.includes("/") || serverPath.includes("\\")) {
    return (await isExecutable(serverPath)) ? undefined : `${serverPath} is not an executable file`;
  }
  return (await onPath(serverPath, pathEnv)) ? undefined : `${serverPath} is not on PATH`;
}
