// Unit tests of src/discovery.ts (compiled to out/discovery.js): the search order for the
// server. Run: npm run compile && node --test test/  (tests/test_vscode_e2e.py runs them too)
"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const test = require("node:test");

const { findServer, explicitProblem, inVenv } = require("../out/discovery.js");

const PYTHON = process.env.NL2CODE_TEST_PYTHON; // an interpreter that can import nl2code_lsp

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), "nl2code-discovery-"));
}

function script(file, body = "#!/bin/sh\nexit 0\n") {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, body, { mode: 0o755 });
  return file;
}

test("the setting wins, with its arguments", async () => {
  const dir = tmpdir();
  script(path.join(dir, "bin", "nl2code-lsp"));
  const found = await findServer("/opt/x/nl2code-lsp", ["--log-level", "INFO"], path.join(dir, "bin"), [dir]);
  assert.deepEqual(found, { command: "/opt/x/nl2code-lsp", args: ["--log-level", "INFO"], source: "nl2code.serverPath" });
});

test("PATH comes before the workspace's virtual environment", async () => {
  const dir = tmpdir();
  const onPath = script(path.join(dir, "tools", "nl2code-lsp"));
  script(path.join(dir, "ws", ".venv", "bin", "nl2code-lsp"));
  const found = await findServer("", [], ["/nonexistent", path.join(dir, "tools")].join(path.delimiter), [path.join(dir, "ws")]);
  assert.equal(found.command, onPath);
  assert.equal(found.source, "PATH");
});

test("a file on PATH that is not executable does not count", async () => {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, "nl2code-lsp"), "", { mode: 0o644 });
  assert.equal(await findServer("", [], dir, []), undefined);
});

test(".venv's script, then venv's, then an interpreter that has nl2code", async () => {
  const ws = tmpdir();
  assert.equal(await inVenv(ws), undefined);
  const venvScript = script(path.join(ws, "venv", "bin", "nl2code-lsp"));
  assert.equal((await inVenv(ws)).command, venvScript);
  const dotVenvScript = script(path.join(ws, ".venv", "bin", "nl2code-lsp"));
  const found = await findServer(undefined, ["--log-level", "INFO"], "", [ws]);
  assert.deepEqual(found, { command: dotVenvScript, args: ["--log-level", "INFO"], source: `.venv in ${ws}` });
});

test("an interpreter that cannot import nl2code_lsp is passed over", async () => {
  const ws = tmpdir();
  script(path.join(ws, ".venv", "bin", "python"), "#!/bin/sh\nexit 1\n"); // find_spec says no
  assert.equal(await inVenv(ws), undefined);
});

test("a venv interpreter with nl2code is started as python -m nl2code_lsp", { skip: !PYTHON && "NL2CODE_TEST_PYTHON not set" }, async () => {
  const ws = tmpdir();
  const python = script(path.join(ws, "venv", "bin", "python"), `#!/bin/sh\nexec '${PYTHON}' "$@"\n`);
  const found = await findServer("", [], "", [ws]);
  assert.deepEqual(found, { command: python, args: ["-m", "nl2code_lsp"], source: `venv in ${ws}` });
});

test("an explicit setting that cannot run is named", async () => {
  const dir = tmpdir();
  assert.match(await explicitProblem(path.join(dir, "missing"), ""), /is not an executable file/);
  assert.match(await explicitProblem("no-such-server", dir), /is not on PATH/);
  assert.equal(await explicitProblem(script(path.join(dir, "ok")), ""), undefined);
});
