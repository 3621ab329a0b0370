//! Append-only JSON Lines audit log of every change attempted on the NAS.
//!
//! OWNER: tools helper.
