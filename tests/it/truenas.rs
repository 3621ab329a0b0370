//! Integration tests: truenas (owned by the truenas helper).
