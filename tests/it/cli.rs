//! Integration tests: cli (owned by the cli helper).
