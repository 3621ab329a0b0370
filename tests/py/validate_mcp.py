"""Validate every message an MCP server wrote against the JSON Schema of the protocol revision in use.

Usage: validate_mcp.py TRANSCRIPT.json SCHEMA_DIR

TRANSCRIPT.json is a list of {"revision": "2025-06-18", "method": "tools/list" | null, "message": {...}}: `method`
is the method of the request a response answers (null for server-initiated messages). Each message is checked
against the generic envelope definition and, where the method is known, the specific result / notification /
request definition. A strict pass then reports members that the revision's schema does not define at all (the
schemas allow extra members, but we promise to send only what a revision knows).

Error responses with `"id": null` (JSON-RPC 2.0 section 5: the id of an unreadable request) cannot be expressed by
the MCP schemas, whose RequestId is string | integer: for those the error object is validated on its own.

Prints one line per problem and exits 1 if there is any.
"""

import json
import sys
from pathlib import Path

import jsonschema

RESULTS = {
    "initialize": "InitializeResult",
    "ping": "EmptyResult",
    "logging/setLevel": "EmptyResult",
    "server/discover": "DiscoverResult",
    "tools/list": "ListToolsResult",
    "tools/call": "CallToolResult",
    "resources/list": "ListResourcesResult",
    "resources/templates/list": "ListResourceTemplatesResult",
    "resources/read": "ReadResourceResult",
    "prompts/list": "ListPromptsResult",
    "prompts/get": "GetPromptResult",
    "completion/complete": "CompleteResult",
}
NOTIFICATIONS = {
    "notifications/progress": "ProgressNotification",
    "notifications/message": "LoggingMessageNotification",
    "notifications/cancelled": "CancelledNotification",
}
REQUESTS = {"elicitation/create": "ElicitRequest"}

_schemas = {}


def schema(revision):
    if revision not in _schemas:
        doc = json.loads((SCHEMA_DIR / f"{revision}.json").read_text())
        key = "$defs" if "$defs" in doc else "definitions"
        _schemas[revision] = (doc, key)
    return _schemas[revision]


def definition(revision, name):
    doc, key = schema(revision)
    return doc[key].get(name)


_validators = {}


def validator_for(revision, node):
    """A compiled validator for `node` (a definition reference or an inline subschema) inside the revision's document."""
    key_str = json.dumps(node, sort_keys=True)
    cache_key = (revision, key_str)
    if cache_key not in _validators:
        doc, key = schema(revision)
        sub = dict(doc)
        sub.pop("$id", None)
        sub.update(node)
        cls = jsonschema.Draft202012Validator if key == "$defs" else jsonschema.Draft7Validator
        _validators[cache_key] = cls(sub)
    return _validators[cache_key]


def check(revision, name, instance, where, problems):
    doc, key = schema(revision)
    if name not in doc[key]:
        problems.append(f"{where}: revision {revision} has no definition {name}")
        return False
    validator = validator_for(revision, {"$ref": f"#/{key}/{name}"})
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    for e in errors[:5]:
        path = "/".join(str(p) for p in e.absolute_path)
        problems.append(f"{where}: not a valid {name} ({revision}) at /{path}: {e.message[:300]}")
    if not errors:
        strict(revision, doc[key][name], instance, where + f" [{name}]", problems)
    return not errors


def resolve(revision, node):
    doc, key = schema(revision)
    while isinstance(node, dict) and "$ref" in node:
        node = doc[key][node["$ref"].split("/")[-1]]
    return node


def matches(revision, node, instance):
    return validator_for(revision, node).is_valid(instance)


# Members whose values are free-form (JSON Schemas, arbitrary JSON): the strict pass does not look inside them.
OPAQUE = {"inputSchema", "outputSchema", "requestedSchema", "structuredContent", "_meta", "data", "arguments",
          "experimental", "content"}


def strict(revision, node, instance, where, problems, top=True):
    """Report object members the schema does not declare (where it declares properties and no additionalProperties).

    Envelope members (jsonrpc, id) are not judged: older revisions describe notifications without them."""
    found = []
    strict_into(revision, node, instance, where, found, top)
    problems.extend(found)


def strict_into(revision, node, instance, where, problems, top=False):
    node = resolve(revision, node)
    if not isinstance(node, dict):
        return
    for combinator in ("anyOf", "oneOf"):
        if combinator in node:
            best = None
            for branch in node[combinator]:
                if matches(revision, resolve(revision, branch), instance):
                    found = []
                    strict_into(revision, branch, instance, where, found, top)
                    if best is None or len(found) < len(best):
                        best = found
            problems.extend(best or [])
            return
    branches = [resolve(revision, b) for b in node.get("allOf", [])] + [node]
    props = {}
    closed = False
    for branch in branches:
        if isinstance(branch, dict) and "properties" in branch:
            closed = closed or "additionalProperties" not in branch
            for name, sub in branch["properties"].items():
                props.setdefault(name, []).append(sub)
        if isinstance(branch, dict) and "additionalProperties" in branch:
            closed = False
    if isinstance(instance, dict) and props:
        for member, value in instance.items():
            if member in props:
                if member not in OPAQUE:
                    for sub in props[member]:
                        strict_into(revision, sub, value, f"{where}.{member}", problems)
            elif closed and not (top and member in ("jsonrpc", "id")):
                problems.append(f"{where}: member '{member}' is not defined by revision {revision}")
    if isinstance(instance, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(instance):
            strict_into(revision, node["items"], item, f"{where}[{i}]", problems)


def check_error(revision, message, where, problems):
    if message.get("id", "absent") is None:
        # JSON-RPC 2.0: id null when the request id could not be read. Validate the rest.
        rest = {k: v for k, v in message.items() if k != "id"}
        if definition(revision, "JSONRPCErrorResponse"):
            check(revision, "JSONRPCErrorResponse", rest, where, problems)
        else:
            err_schema = definition(revision, "JSONRPCError")["properties"]["error"]
            for e in validator_for(revision, err_schema).iter_errors(message.get("error")):
                problems.append(f"{where}: bad error object: {e.message[:300]}")
            if set(message) != {"jsonrpc", "id", "error"} or message.get("jsonrpc") != "2.0":
                problems.append(f"{where}: bad error envelope {sorted(message)}")
        return
    name = "JSONRPCErrorResponse" if definition(revision, "JSONRPCErrorResponse") else "JSONRPCError"
    check(revision, name, message, where, problems)
    code = message.get("error", {}).get("code")
    if code == -32022 and definition(revision, "UnsupportedProtocolVersionError"):
        check(revision, "UnsupportedProtocolVersionError", message, where, problems)


def check_one(revision, method, message, where, problems):
    if isinstance(message, list):
        if revision != "2025-03-26":
            problems.append(f"{where}: a batch answer outside 2025-03-26")
        check(revision, "JSONRPCBatchResponse", message, where, problems)
        for i, item in enumerate(message):
            if "error" in item:
                check_error(revision, item, f"{where}[{i}]", problems)
        return
    if "error" in message:
        check_error(revision, message, where, problems)
    elif "result" in message:
        name = "JSONRPCResultResponse" if definition(revision, "JSONRPCResultResponse") else "JSONRPCResponse"
        check(revision, name, message, where, problems)
        result_def = RESULTS.get(method)
        if revision == "2026-07-28" and method == "tools/call":
            check(revision, "CallToolResultResponse", message, where, problems)
        elif result_def:
            check(revision, result_def, message["result"], where, problems)
        elif method:
            problems.append(f"{where}: no result definition known for method {method}")
    elif "id" in message:
        check(revision, "JSONRPCRequest", message, where, problems)
        check(revision, "ServerRequest", message, where, problems)
        specific = REQUESTS.get(message.get("method"))
        if specific:
            check(revision, specific, message, where, problems)
    else:
        check(revision, "JSONRPCNotification", message, where, problems)
        check(revision, "ServerNotification", message, where, problems)
        specific = NOTIFICATIONS.get(message.get("method"))
        if specific:
            check(revision, specific, message, where, problems)


def main():
    global SCHEMA_DIR
    transcript = json.loads(Path(sys.argv[1]).read_text())
    SCHEMA_DIR = Path(sys.argv[2])
    problems = []
    for i, entry in enumerate(transcript):
        where = f"message {i} ({entry.get('method') or 'server-initiated'}, {entry['revision']})"
        check_one(entry["revision"], entry.get("method"), entry["message"], where, problems)
    for p in problems:
        print(p)
    print(f"checked {len(transcript)} messages, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
