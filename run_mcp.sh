#!/usr/bin/env bash
# The command an MCP client (Claude Code, Claude Desktop, Cursor) runs: execs the release binary with all arguments.
# Never writes to stdout itself (stdout belongs to the MCP protocol); everything it says goes to stderr, which
# clients keep in their MCP logs.
#
# - No binary yet (a fresh clone): builds it first and says so. The first release build takes a few minutes, longer
#   than clients wait for a server to start, so the README has you run `cargo build --release` before registering.
# - A binary older than the sources (after `git pull`): serves that binary at once, so the client is never left
#   waiting on a build, and rebuilds in the background; the next start of the server uses the new build.
# - TRUENAS_MCP_BINARY=/path/to/truenas-mcp: serves that binary as is (an installed copy, or the tests' build).
set -euo pipefail
if [ -n "${TRUENAS_MCP_BINARY:-}" ]; then
  exec "$TRUENAS_MCP_BINARY" "$@"
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$here/target/release/truenas-mcp"
build() { cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin truenas-mcp; }
if [ ! -x "$bin" ]; then
  echo "run_mcp.sh: no release build yet; building truenas-mcp now (a few minutes the first time; if your MCP client gives up, run 'cargo build --release' in $here and restart it)" >&2
  build 1>&2
elif [ -n "$(find "$here/src" "$here/Cargo.toml" "$here/Cargo.lock" -newer "$bin" -print -quit 2>/dev/null)" ]; then
  log="$here/target/run_mcp-rebuild.log"
  lock="$here/target/.run_mcp-rebuild"
  # A lock left by a killed build (older than any build takes) does not block rebuilds forever.
  find "$lock" -maxdepth 0 -mmin +30 -exec rmdir {} \; 2>/dev/null || true
  if mkdir "$lock" 2>/dev/null; then
    echo "run_mcp.sh: the sources changed since the last build; serving the previous build and rebuilding in the background (log: $log); restart the server to use the new build" >&2
    (build >"$log" 2>&1; rmdir "$lock") </dev/null >/dev/null 2>&1 &
  else
    echo "run_mcp.sh: the sources changed since the last build; a rebuild is already running (log: $log); serving the previous build" >&2
  fi
fi
exec "$bin" "$@"
