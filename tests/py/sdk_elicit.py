"""The official Python MCP SDK confirms a destructive tool of the real binary (`--mock`) through elicitation:
a server->client `elicitation/create` request in legacy mode, `input_required` retries in 2026-07-28 mode.
The callback first declines (nothing may be deleted), then accepts. Prints a JSON report.

Usage: sdk_elicit.py BINARY [ARGS...]
"""

import asyncio
import json
import sys

from mcp import Client, types
from mcp.client.stdio import StdioServerParameters


async def run(mode, command, args):
    answers = ["decline", "accept"]
    questions = []

    async def on_elicit(context, params):
        questions.append(params.message)
        action = answers.pop(0)
        content = {"confirm": True} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)

    params = StdioServerParameters(command=command, args=args)
    async with Client(params, mode=mode, elicitation_callback=on_elicit, read_timeout_seconds=30) as client:
        listed = await client.call_tool("list_custom_apps", {})
        names = [a["name"] for a in listed.structured_content["apps"]]
        victim = names[0]
        declined = await client.call_tool("delete_custom_app", {"app_name": victim})
        after_decline = await client.call_tool("list_custom_apps", {})
        accepted = await client.call_tool("delete_custom_app", {"app_name": victim})
        after_accept = await client.call_tool("list_custom_apps", {})
        return {
            "protocol_version": client.protocol_version,
            "questions": len(questions),
            "declined_status": declined.structured_content.get("status"),
            "kept_after_decline": victim in [a["name"] for a in after_decline.structured_content["apps"]],
            "accepted_status": accepted.structured_content.get("status"),
            "gone_after_accept": victim not in [a["name"] for a in after_accept.structured_content["apps"]],
        }


async def main():
    command, args = sys.argv[1], sys.argv[2:]
    report = {}
    for mode in ("legacy", "2026-07-28"):
        report["modern" if mode == "2026-07-28" else mode] = await run(mode, command, args)
    print(json.dumps(report))


asyncio.run(main())
