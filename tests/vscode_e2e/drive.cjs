// Drives a real VS Code workbench (code-server in Chromium, through playwright-core) with
// the nl2code extension installed, and writes what it saw to a JSON file for
// tests/test_vscode_e2e.py to check. Everything read back is DOM text; screenshots are
// saved alongside for people.
//
// usage: node drive.cjs CONFIG.json       (the config's fields are read in main())
//
// Phases, in one window:
//   setting  - nl2code.serverPath in the Machine settings: completion (Python), inline ghost
//              text accepted with Tab, the command "nl2code: Generate code from comment",
//              completion in a shell script
//   broken   - nl2code.serverPath names a program that exits at once: one message, no loop
//   missing  - the setting removed, nothing on PATH, no virtual environment: one message
//              with an "Open Setting" button that opens the setting; no restart loop
//   venv     - a .venv appears in the workspace and a settings change restarts the server:
//              found there, completion works again; then nl2code.n changes (no restart)
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const { chromium } = require(cfg.playwrightCore);

const result = { steps: {}, log: [] };
let page;

function log(msg) {
  const line = `[${new Date().toISOString().slice(11, 19)}] ${msg}`;
  result.log.push(line);
  console.log(line);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function shot(name, locator) {
  const file = path.join(cfg.screenshots, name);
  await (locator ?? page).screenshot({ path: file });
  log(`screenshot ${file}`);
  return file;
}

/** Polls fn until it returns a truthy value; throws what `what` says on timeout. */
async function until(what, fn, timeoutMs, everyMs = 500) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) {
      return value;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    }
    await sleep(everyMs);
  }
}

/** Texts of the notification toasts on screen. */
async function toasts() {
  return page.$$eval(".notifications-toasts .notification-list-item", (els) =>
    els.map((e) => e.innerText.replace(/\s+/g, " ").trim()),
  );
}

/** The active editor's lines, top to bottom, as the DOM renders them (no ghost text). */
async function editorLines() {
  return page.evaluate(() => {
    const editor = document.querySelector(".part.editor .editor-group-container.active .monaco-editor");
    if (!editor) return null;
    const lines = [...editor.querySelectorAll(".view-lines .view-line")];
    lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    return lines.map((l) => {
      const copy = l.cloneNode(true);
      copy.querySelectorAll(".ghost-text-decoration, .ghost-text").forEach((g) => g.remove());
      return copy.textContent.replace(/\u00a0/g, " ").replace(/\s+$/, "");
    });
  });
}

async function runCommand(title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 15000 });
  await input.fill(">" + title);
  await page
    .locator(".quick-input-widget .monaco-list-row", { hasText: title })
    .first()
    .waitFor({ timeout: 15000 });
  await page.keyboard.press("Enter");
}

async function openFile(name) {
  await page.locator(`.explorer-folders-view .monaco-list-row[aria-label*="${name}"]`).first().click();
  await until(`${name} in the editor`, async () => {
    const tab = await page.$(`.tabs-container .tab.active[aria-label*="${name}"]`);
    return tab && (await editorLines()) !== null;
  }, 15000);
  await page.locator(".part.editor .editor-group-container.active .monaco-editor .view-lines").click();
}

/** Puts the cursor at the end of the last line with text, on a new line. */
async function newLineAtEnd() {
  await page.keyboard.press("Control+End");
  const lines = await editorLines();
  if (lines[lines.length - 1].trim() !== "") {
    await page.keyboard.press("End");
    await page.keyboard.press("Enter");
  }
}

/** Visible suggest-widget rows: [{label, detail}]. */
async function suggestions() {
  return page.$$eval(".suggest-widget.visible .monaco-list-row", (rows) =>
    rows.map((r) => ({
      label: (r.querySelector(".label-name")?.textContent ?? "").replace(/\u00a0/g, " ").trim(),
      detail: (r.querySelector(".details-label")?.textContent ?? "").replace(/\u00a0/g, " ").trim(),
      focused: r.classList.contains("focused"),
    })),
  );
}

/**
 * Ctrl+Space at the cursor until nl2code's suggestions show (the first requests may come
 * while the model loads; the server then answers empty and keeps generating), then Enter.
 */
async function completeAndAccept(name, timeoutMs) {
  const start = Date.now();
  const rows = await until("nl2code completion items", async () => {
    const failed = (await toasts()).find((t) => /nl2code/i.test(t) && /crashed|initialization failed|did not start|cannot/i.test(t));
    if (failed) {
      throw new Error(`nl2code reported an error: ${failed}`); // no point waiting for suggestions
    }
    await page.keyboard.press("Escape");
    await page.keyboard.press("Control+Space");
    try {
      await page.locator(".suggest-widget.visible .monaco-list-row").first().waitFor({ timeout: 6000 });
    } catch {
      return null;
    }
    await sleep(300);
    const seen = await suggestions();
    return seen.some((r) => r.detail.includes("nl2code")) ? seen : null;
  }, timeoutMs, 1000);
  log(`${name}: ${rows.length} items after ${((Date.now() - start) / 1000).toFixed(1)} s`);
  const accepted = rows.find((r) => r.focused) ?? rows[0];
  await shot(`${name}.png`);
  await shot(`${name}-editor.png`, page.locator(".part.editor"));
  await page.keyboard.press("Enter");
  await sleep(500);
  result.steps[name] = { items: rows, accepted, lines: await editorLines(), seconds: (Date.now() - start) / 1000 };
}

async function ghostText() {
  return page.$$eval(".part.editor .monaco-editor .ghost-text-decoration, .part.editor .monaco-editor .ghost-text",
    (els) => els.map((e) => e.textContent.replace(/\u00a0/g, " ")).join("").trim());
}

async function inlineAndAccept(name, comment, timeoutMs) {
  await newLineAtEnd();
  await page.keyboard.type(comment, { delay: 20 });
  const start = Date.now();
  const ghost = await until("inline ghost text", async () => {
    const text = await ghostText();
    if (text) return text;
    await page.keyboard.press("Alt+Backslash"); // Trigger Inline Suggestion
    await sleep(2000);
    return await ghostText();
  }, timeoutMs, 500);
  log(`${name}: ghost text ${JSON.stringify(ghost)} after ${((Date.now() - start) / 1000).toFixed(1)} s`);
  await shot(`${name}.png`);
  await page.keyboard.press("Tab");
  await sleep(500);
  result.steps[name] = { ghost, lines: await editorLines() };
}

async function commandAndPick(name, comment, timeoutMs) {
  await newLineAtEnd();
  await page.keyboard.type(comment, { delay: 10 });
  await page.keyboard.press("Escape"); // no ghost text in the way
  await sleep(300);
  await runCommand("nl2code: Generate code from comment");
  const rows = page.locator(".quick-input-widget .quick-input-list .monaco-list-row");
  const labels = await until("the nl2code quick pick", async () => {
    const texts = await rows.evaluateAll((els) =>
      els.map((e) => (e.querySelector(".label-name")?.textContent ?? e.textContent).replace(/\u00a0/g, " ").trim()));
    const placeholder = await page.locator(".quick-input-widget input").getAttribute("placeholder");
    // the widget is the Command Palette's, reused: wait until it lists candidates, not commands
    const ours = placeholder && placeholder.includes(comment.replace(/^#\s*/, ""));
    return texts.length && ours && !texts.some((t) => t.startsWith("nl2code:")) ? texts : null;
  }, timeoutMs, 500);
  await shot(`${name}.png`);
  await page.keyboard.press("Enter");
  await sleep(800);
  result.steps[name] = { picks: labels, lines: await editorLines() };
}

function writeMachineSettings(settings) {
  fs.mkdirSync(path.dirname(cfg.machineSettings), { recursive: true });
  fs.writeFileSync(cfg.machineSettings, JSON.stringify(settings, null, 2));
  log(`Machine settings: ${JSON.stringify(settings)}`);
}

async function phaseSetting() {
  await openFile("demo.py");
  await page.keyboard.press("Control+Home");
  await page.keyboard.press("End");
  await completeAndAccept("python-completion", cfg.serverTimeoutMs);
  await inlineAndAccept("python-inline", cfg.intents.inline, cfg.serverTimeoutMs);
  await commandAndPick("python-command", cfg.intents.command, cfg.serverTimeoutMs);
  await openFile("demo.sh");
  await page.keyboard.press("Control+Home");
  await page.keyboard.press("End");
  await completeAndAccept("bash-completion", cfg.serverTimeoutMs);
}

/** Dismisses the notification toasts on screen. */
async function clearToasts() {
  for (const close of await page.$$(".notifications-toasts .notification-list-item .codicon-notifications-clear")) {
    await close.click().catch(() => undefined);
  }
  await until("no notification toasts", async () => (await toasts()).length === 0, 10000);
}

async function phaseBroken() {
  // A server that exits at once (as nl2code-lsp did on `--stdio`): one message, no restarts.
  writeMachineSettings({ "nl2code.serverPath": cfg.brokenServer });
  const message = await until("the 'did not start' message", async () =>
    (await toasts()).find((t) => t.includes("did not start")), 60000);
  await sleep(5000); // a restart loop would show more messages by now
  const all = await toasts();
  log(`broken: ${JSON.stringify(all)}`);
  await shot("broken-server.png");
  result.steps.broken = { message, toasts: all };
  await clearToasts();
}

async function phaseMissing() {
  const before = (await toasts()).length;
  writeMachineSettings({});
  const message = await until("the 'cannot find the language server' message", async () =>
    (await toasts()).find((t) => t.includes("cannot find the language server")), 60000);
  await sleep(5000); // a restart loop would show more messages by now
  const all = await toasts();
  log(`missing: ${JSON.stringify(all)}`);
  await shot("missing-server.png");
  const button = page.locator(".notifications-toasts .notification-list-item", { hasText: "cannot find" })
    .locator(".monaco-button", { hasText: "Open Setting" });
  await button.click();
  const settingTitle = await until("the Settings editor at nl2code.serverPath", async () => {
    const titles = await page.$$eval(".settings-editor .setting-item-contents .setting-item-title",
      (els) => els.map((e) => e.innerText.replace(/\s+/g, " ").trim()));
    return titles.find((t) => /Server Path/i.test(t));
  }, 30000);
  const query = await page.evaluate(() =>
    document.querySelector(".settings-editor .suggest-input-container .view-lines")?.textContent.replace(/\u00a0/g, " "));
  await shot("missing-server-setting.png");
  result.steps.missing = { message, toasts: all, before, settingTitle, query };
  await page.locator(".settings-editor").first().click(); // the Settings editor is a modal: close it
  await page.keyboard.press("Escape");
  await until("the Settings editor to close", async () => !(await page.$(".settings-editor:visible")), 15000);
}

async function phaseVenv() {
  fs.renameSync(cfg.venvLater, cfg.venvNow);
  log(`created ${cfg.venvNow}`);
  writeMachineSettings({ "nl2code.serverArgs": ["--log-level", "WARNING"] }); // a change restarts the server
  await openFile("demo.py");
  await newLineAtEnd();
  await page.keyboard.type(cfg.intents.venv, { delay: 10 });
  await page.keyboard.press("Escape");
  await completeAndAccept("venv-completion", cfg.serverTimeoutMs);
  result.steps.venv = { toasts: await toasts() };
  // A server setting changes without a restart: the next answer has at most 2 candidates.
  writeMachineSettings({ "nl2code.serverArgs": ["--log-level", "WARNING"], "nl2code.n": 2 });
  await sleep(2000);
  await newLineAtEnd();
  await page.keyboard.type(cfg.intents.settings, { delay: 10 });
  await page.keyboard.press("Escape");
  await completeAndAccept("settings-change", cfg.serverTimeoutMs);
  result.steps.venv.toastsAfterChange = await toasts();
}

async function main() {
  fs.mkdirSync(cfg.screenshots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.on("pageerror", (err) => log(`page error: ${err.message}`));
    await page.goto(cfg.url, { waitUntil: "domcontentloaded", timeout: 60000 });
    await page.locator(".monaco-workbench .part.editor").waitFor({ timeout: 90000 });
    await until("the Explorer to list the workspace", () => page.$('.explorer-folders-view .monaco-list-row[aria-label*="demo.py"]'), 60000);
    log("workbench ready");
    for (const [name, phase] of [["setting", phaseSetting], ["broken", phaseBroken], ["missing", phaseMissing], ["venv", phaseVenv]]) {
      log(`phase ${name}`);
      await phase();
    }
    result.ok = true;
  } catch (err) {
    result.ok = false;
    result.error = String(err && err.stack ? err.stack : err);
    log(`FAILED: ${err}`);
    try {
      result.toasts = await toasts();
      await shot("failure.png");
    } catch {
      // the page may be gone
    }
  } finally {
    fs.writeFileSync(cfg.out, JSON.stringify(result, null, 2));
    await browser.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
