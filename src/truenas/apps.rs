//! Typed `app.*` / `docker.*` calls for the tools, shaped per connected version (reference/schemas).
//!
//! OWNER: tools helper.
