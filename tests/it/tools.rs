//! Integration tests: tools (owned by the tools helper).
