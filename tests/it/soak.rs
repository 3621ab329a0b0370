//! Integration tests: soak (owned by the proof helper).
