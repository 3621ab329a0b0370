//! Shared test support. Helpers put area-specific support in their own module files.
