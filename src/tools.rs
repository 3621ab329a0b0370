//! The tool catalogue: one table of tools (name, title, description, schemas, annotations, handler).
//!
//! OWNER: tools helper.
