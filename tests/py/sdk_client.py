"""Drive the real truenas-mcp binary with the official Python MCP SDK in three modes and print a JSON report.

Usage: sdk_client.py BINARY [ARGS...]

- legacy: the initialize handshake (what every pre-2026 client does);
- auto: the SDK v2 default, which probes `server/discover` and falls back to initialize on any error;
- modern: pinned to 2026-07-28 (per-request `_meta`, no handshake, no probe).
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError


async def run(mode, command, args):
    params = StdioServerParameters(command=command, args=args)
    async with Client(params, mode=mode, read_timeout_seconds=20) as client:
        report = {"protocol_version": client.protocol_version}
        report["server_name"] = client.server_info.name if client.server_info else None
        report["capabilities"] = client.server_capabilities.model_dump(by_alias=True, exclude_none=True)
        listing = await client.list_tools()
        report["tools"] = [t.name for t in listing.tools]
        # Only hints that differ from the spec's defaults are published; every tool is closed-world.
        report["annotated"] = all(
            t.annotations is not None and t.annotations.open_world_hint is False for t in listing.tools
        )
        # A read-only tool that needs no arguments (the SDK would check structuredContent against an outputSchema;
        # ours are not published, see ARCHITECTURE.md).
        candidates = [t for t in listing.tools
                      if t.annotations and t.annotations.read_only_hint and not (t.input_schema.get("required") or [])]
        if candidates:
            tool = candidates[0]
            result = await client.call_tool(tool.name, {})
            report["called"] = tool.name
            # A successful result has passed the SDK's outputSchema check of structuredContent by now.
            report["call_is_error"] = result.is_error
            report["call_text"] = result.content[0].text[:200] if result.content else ""
        caps = client.server_capabilities
        if caps.resources is not None:
            resources = await client.list_resources()
            report["resources"] = [str(r.uri) for r in resources.resources]
            if resources.resources:
                read = await client.read_resource(resources.resources[0].uri)
                report["resource_read"] = bool(read.contents) and bool(getattr(read.contents[0], "text", ""))
        if caps.prompts is not None:
            prompts = await client.list_prompts()
            report["prompts"] = [p.name for p in prompts.prompts]
        try:
            await client.call_tool("no_such_tool", {})
            report["unknown_tool_error"] = None
        except MCPError as e:
            report["unknown_tool_error"] = e.code
        if mode == "legacy":
            await client.send_ping()
            report["ping"] = True
    return report


async def main():
    command, args = sys.argv[1], sys.argv[2:]
    report = {}
    for mode in ("legacy", "auto", "2026-07-28"):
        report["modern" if mode == "2026-07-28" else mode] = await run(mode, command, args)
    print(json.dumps(report))


asyncio.run(main())
