//! The SMTP edge: listeners and sessions (`server/`), replies, and STARTTLS set-up.

pub mod reply;
pub mod server;
pub mod tls;
