"""Drive an in-process test server (reached through tcp_bridge.py) with the official Python MCP SDK: structured
results, elicitation (server->client request in the legacy era, input_required retries in 2026-07-28), progress
callbacks and log messages. Prints a JSON report.

Usage: sdk_features.py PORT legacy|modern
"""

import asyncio
import json
import sys
from pathlib import Path

from mcp import Client, types
from mcp.client.stdio import StdioServerParameters

port, mode = sys.argv[1], sys.argv[2]
bridge = str(Path(__file__).with_name("tcp_bridge.py"))


async def main():
    logs = []
    elicited = []

    async def on_elicit(context, params):
        elicited.append(params.message)
        return types.ElicitResult(action="accept", content={"confirm": True})

    async def on_log(params):
        logs.append(params.level)

    params = StdioServerParameters(command=sys.executable, args=[bridge, port])
    client_mode = "legacy" if mode == "legacy" else "2026-07-28"
    options = dict(mode=client_mode, elicitation_callback=on_elicit, logging_callback=on_log, read_timeout_seconds=20)
    if mode != "legacy":
        options["log_level"] = "warning"
    report = {}
    async with Client(params, **options) as client:
        report["protocol_version"] = client.protocol_version
        if mode == "legacy":
            await client.set_logging_level("warning")
        await client.list_tools()
        echo = await client.call_tool("echo", {"message": "hi", "times": 2})
        report["echo"] = echo.structured_content
        confirm = await client.call_tool("confirm", {})
        report["confirm"] = confirm.content[0].text
        report["elicited"] = elicited
        progress = []

        async def on_progress(value, total, message):
            progress.append(value)

        await client.call_tool("progress", {}, progress_callback=on_progress)
        await client.call_tool("log", {})
        await asyncio.sleep(0.2)  # notifications are delivered asynchronously
        report["progress"] = progress
        report["logs"] = logs
        invalid = await client.call_tool("echo", {"times": 7})
        report["invalid_is_error"] = invalid.is_error
        report["invalid_text"] = invalid.content[0].text
    print(json.dumps(report))


asyncio.run(main())
