//! Integration tests: sim (owned by the sim helper).
