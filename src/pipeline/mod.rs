//! Glue between SMTP, the security agent, trust, the store and notifications: what happens to
//! a message on its way out and on its way in.

pub mod inbound;
pub mod outbound;
