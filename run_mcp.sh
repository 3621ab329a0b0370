#!/usr/bin/env bash
# The command an MCP client (Claude Code, Claude Desktop, Cursor) runs. Builds the release binary when it is
# missing or older than the sources, then execs it with all arguments. Never writes to stdout itself: stdout
# belongs to the MCP protocol.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$here/target/release/truenas-mcp"
stale=0
if [ ! -x "$bin" ]; then
  stale=1
elif [ -n "$(find "$here/src" "$here/Cargo.toml" "$here/Cargo.lock" -newer "$bin" -print -quit 2>/dev/null)" ]; then
  stale=1
fi
if [ "$stale" = 1 ]; then
  echo "run_mcp.sh: building truenas-mcp (release) ..." >&2
  cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin truenas-mcp 1>&2
fi
exec "$bin" "$@"
