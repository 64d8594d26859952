-- nl2code language server for Neovim 0.10+ (uses vim.lsp.start; no plugins needed).
--
-- Install: copy this file to ~/.config/nvim/lua/nl2code.lua, then in init.lua:
--
--   require("nl2code").setup({
--     -- cmd = { "nl2code-lsp", "--model", "/path/to/model" },
--     settings = { nl2code = { n = 5, beam = 5, maxLatencyMs = 3000 } },
--   })
--
-- What you get in Python and shell buffers:
--   * completion (<C-x><C-o>, or any LSP completion plugin) on an intent comment such as
--       # sort list `xs` in descending order
--     or on the blank line right after it;
--   * :Nl2Code (or vim.lsp.buf.code_action()) inserts the best candidate under the
--     comment lines of the cursor or the visual selection;
--   * textDocument/inlineCompletion, for clients and plugins that ask for it.

local M = {}

M.defaults = {
  cmd = { "nl2code-lsp" }, -- a list: the server and its arguments
  cmd_env = nil, -- extra environment for the server, e.g. { NL2CODE_MODEL = "/path" }
  filetypes = { "python", "sh", "bash" },
  settings = { nl2code = {} }, -- modelPath, n, beam, maxLatencyMs, enabledLanguages
}

local function is_nl2code_action(action)
  return action.title:find("^nl2code:") ~= nil
end

--- Generate code from the comment lines at the cursor, or in a range (:'<,'>Nl2Code).
function M.generate(cmd)
  local opts = { filter = is_nl2code_action, apply = true }
  if cmd and cmd.range and cmd.range > 0 then
    local last = vim.api.nvim_buf_get_lines(0, cmd.line2 - 1, cmd.line2, false)[1] or ""
    opts.range = { start = { cmd.line1, 0 }, ["end"] = { cmd.line2, #last } }
  end
  vim.lsp.buf.code_action(opts)
end

function M.setup(opts)
  opts = vim.tbl_deep_extend("force", M.defaults, opts or {})
  vim.api.nvim_create_autocmd("FileType", {
    group = vim.api.nvim_create_augroup("nl2code", { clear = true }),
    pattern = opts.filetypes,
    callback = function(ev)
      local root = vim.fs.root(ev.buf, { ".git", "pyproject.toml", "setup.py" })
      vim.lsp.start({
        name = "nl2code",
        cmd = opts.cmd,
        cmd_env = opts.cmd_env,
        root_dir = root or vim.fn.getcwd(),
        init_options = opts.settings, -- read once at start-up
        settings = opts.settings, -- answered to workspace/configuration
      }, { bufnr = ev.buf })
      vim.api.nvim_buf_create_user_command(ev.buf, "Nl2Code", M.generate,
        { range = true, desc = "nl2code: generate code from comment" })
    end,
  })
end

return M
