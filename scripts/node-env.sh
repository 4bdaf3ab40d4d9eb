# Sourced by ./agentgate-dev and scripts/with-node: puts a Node this project supports
# (>= 22.12) first on PATH. When the machine's Node is older, it fetches Node 24 for this
# project only (the npm package node-linux-<arch>@24, into a cache; nothing machine-wide
# changes), like a build-tool wrapper fetches its tool, and says so on stderr.
# Native add-ons (ssh2, keytar, node-pty, cpu-features) must be built against that Node's
# headers, so npm_config_nodedir points node-gyp at them.

AGENTGATE_NODE_CACHE="${AGENTGATE_NODE_CACHE:-$HOME/.cache/node24}"

agentgate_node_ok() {
  # 0 when `node` on PATH is >= 22.12.
  command -v node >/dev/null 2>&1 &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}

agentgate_use_node() {
  if agentgate_node_ok; then
    :
  else
    local arch pkg was
    case "$(uname -m)" in
      x86_64|amd64) arch=x64 ;;
      aarch64|arm64) arch=arm64 ;;
      *) echo "agentgate: needs Node.js >= 22.12 and cannot fetch one for $(uname -m); install Node 22+ and run again" >&2; return 1 ;;
    esac
    pkg="node-linux-$arch"
    was="$(node --version 2>/dev/null || echo 'no node')"
    if [ ! -x "$AGENTGATE_NODE_CACHE/node_modules/$pkg/bin/node" ]; then
      if ! command -v npm >/dev/null 2>&1; then
        echo "agentgate: needs Node.js >= 22.12 (found $was) and npm to fetch it; install Node 22+ and run again" >&2
        return 1
      fi
      echo "agentgate: this machine's Node is $was; fetching Node 24 for this project into $AGENTGATE_NODE_CACHE (npm package $pkg@24)" >&2
      npm install --prefix "$AGENTGATE_NODE_CACHE" --no-save --no-audit --no-fund --loglevel=error "$pkg@24" >&2 || return 1
    fi
    export PATH="$AGENTGATE_NODE_CACHE/node_modules/$pkg/bin:$PATH"
    echo "agentgate: using Node $(node --version) from $AGENTGATE_NODE_CACHE (this machine's Node is $was)" >&2
  fi
  local prefix
  prefix="$(dirname "$(dirname "$(command -v node)")")"
  if [ -f "$prefix/include/node/node.h" ]; then
    export npm_config_nodedir="$prefix"
  fi
}
