//! Notifications hisp writes about mail: delivery status notifications (RFC 3464) now; MDNs
//! and timely-and-reliable tracking belong here too.

pub mod dsn;
