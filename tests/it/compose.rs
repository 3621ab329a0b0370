//! Integration tests: compose (owned by the compose helper).
