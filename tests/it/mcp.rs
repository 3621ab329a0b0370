//! Integration tests: mcp (owned by the mcp helper).
