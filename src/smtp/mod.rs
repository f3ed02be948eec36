//! The SMTP edge: listeners and sessions (`server/`), the delivery client, replies, and
//! STARTTLS set-up.

pub mod client;
pub mod mx;
pub mod reply;
pub mod server;
pub mod tls;
