//! Notifications: MDNs (processed, dispatched, failed) and DSNs (RFC 3464) — building,
//! reading, and tracking them per outbound message and recipient (SPEC E).

pub mod dsn;
pub mod mdn;
pub mod tracking;
