//! Integration tests: faults (owned by the proof helper).
