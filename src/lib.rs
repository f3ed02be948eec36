//! hisp: a Direct secure-messaging gateway (HISP). The binary and the integration tests
//! share this library; see DESIGN.md for the map.

pub mod address;
pub mod api;
pub mod auth;
pub mod bundles;
pub mod certinfo;
pub mod cli;
pub mod clock;
pub mod config;
pub mod devpki;
pub mod discovery;
pub mod dns_server;
pub mod fetch;
pub mod headers;
pub mod hosting;
pub mod keys;
pub mod listen;
pub mod login;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod queue;
pub mod smime;
pub mod smtp;
pub mod store;
pub mod trust;
