//! Integration tests: properties (owned by the proof helper).
