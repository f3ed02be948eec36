//! Notifications: MDNs (processed, dispatched, failed) and DSNs — building, reading, and
//! tracking them per outbound message and recipient (SPEC E).

pub mod mdn;
pub mod tracking;
