//! The TOML configuration: typed, every key defaulted, validated at load.
//!
//! Errors are one line naming the key, because an operator reads them in a journal
//! after a failed start and needs to know exactly what to edit.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the config came from, reported by `hisp config show` and start-up logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Defaults,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path} line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// EHLO name, Reporting-UA, right-hand side of generated Message-IDs.
    pub hostname: String,
    /// Directory for the default SQLite file and the generated master key.
    pub data_dir: PathBuf,
    pub database: Database,
    pub smtp: Smtp,
    pub delivery: Delivery,
    pub dns: Dns,
    pub discovery: Discovery,
    pub security: Security,
    pub notifications: Notifications,
    pub mailbox: Mailbox,
    pub api: Api,
    pub keys: Keys,
    pub dns_server: DnsServer,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: system_hostname(),
            data_dir: PathBuf::from("data"),
            database: Database::default(),
            smtp: Smtp::default(),
            delivery: Delivery::default(),
            dns: Dns::default(),
            discovery: Discovery::default(),
            security: Security::default(),
            notifications: Notifications::default(),
            mailbox: Mailbox::default(),
            api: Api::default(),
            keys: Keys::default(),
            dns_server: DnsServer::default(),
        }
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `sqlite://path` or `postgres://user@host:port/db`; empty means
    /// `sqlite://<data_dir>/hisp.db`, filled in at load.
    pub url: String,
    pub max_connections: u32,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: String::new(),
            max_connections: 10,
        }
    }
}

// The URL may carry a password; keep it out of any `{:?}` that reaches a log.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("url", &crate::store::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    #[serde(deserialize_with = "socket_addrs")]
    pub listen: Vec<SocketAddr>,
    #[serde(deserialize_with = "socket_addrs")]
    pub submission_listen: Vec<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_tls_for_auth: bool,
    pub max_message_size: Size,
    /// RFC 5321 4.5.3.1.6 says at least 1000 octets; real mail has longer lines.
    pub max_line_length: Size,
    pub max_recipients: u32,
    pub max_commands: u32,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    /// RFC 5321 4.5.3.2: 5 minutes for commands, 10 minutes between DATA chunks.
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub max_auth_failures: u32,
    pub auth_failure_backoff: Duration,
    /// `direct` (S/MIME on both listeners) or `plain` (no S/MIME at all: only for testing
    /// the SMTP edge and the queue; never on a real HISP).
    pub pipelines: Pipelines,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pipelines {
    #[default]
    Direct,
    Plain,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 25))],
            submission_listen: vec![SocketAddr::from(([0, 0, 0, 0], 587))],
            tls_cert: None,
            tls_key: None,
            require_tls_for_auth: true,
            max_message_size: Size(50 * 1024 * 1024),
            max_line_length: Size(8192),
            max_recipients: 100,
            max_commands: 1000,
            max_connections: 1000,
            max_connections_per_ip: 50,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            max_auth_failures: 3,
            auth_failure_backoff: Duration::from_secs(60),
            pipelines: Pipelines::Direct,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Static next hop per recipient domain, `host:port`.
    pub routes: BTreeMap<String, String>,
    pub retry: Vec<Duration>,
    pub give_up_after: Duration,
    /// Refuse to deliver without STARTTLS (default: opportunistic).
    pub require_tls: bool,
    pub workers: u32,
    /// How long a worker owns a claimed queue item before another node may take it.
    pub lease: Duration,
    pub connect_timeout: Duration,
    /// SMTP port of MX and A/AAAA next hops: 25 (only tests change it).
    pub port: u16,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            routes: BTreeMap::new(),
            retry: ["1m", "5m", "15m", "1h", "4h"]
                .iter()
                .map(|s| Duration::parse(s).expect("built-in duration"))
                .collect(),
            give_up_after: Duration::from_secs(3 * 86400),
            require_tls: false,
            workers: 4,
            lease: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            port: 25,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Empty means the system resolver configuration (/etc/resolv.conf).
    #[serde(deserialize_with = "socket_addrs")]
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Discovery {
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
    /// Most discovery results kept in memory (about 16 KiB each).
    pub cache_entries: u32,
    pub ldap_timeout: Duration,
    /// Limits for IPKIX certificate URLs and AIA/CRL fetches.
    pub fetch_timeout: Duration,
    pub fetch_max_size: Size,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            cache_ttl: Duration::from_secs(3600),
            negative_cache_ttl: Duration::from_secs(300),
            cache_entries: 10_000,
            ldap_timeout: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(10),
            fetch_max_size: Size(1024 * 1024),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyTransport {
    RsaOaep,
    RsaPkcs1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ContentCipher {
    #[serde(rename = "aes-128-cbc")]
    Aes128Cbc,
    #[serde(rename = "aes-256-cbc")]
    Aes256Cbc,
    #[serde(rename = "aes-128-gcm")]
    Aes128Gcm,
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrlMode {
    SoftFail,
    HardFail,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    pub key_transport: KeyTransport,
    pub content_cipher: ContentCipher,
    pub crl: CrlMode,
    /// Legacy switches (SPEC A4/A5): off unless an admin must talk to an old peer.
    pub allow_sha1: bool,
    pub allow_3des: bool,
    pub allow_rc2: bool,
    pub max_path_length: u32,
    /// Certificate policy OIDs a partner certificate must carry (empty: no filter).
    pub required_policies: Vec<String>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            key_transport: KeyTransport::RsaOaep,
            content_cipher: ContentCipher::Aes256Cbc,
            crl: CrlMode::SoftFail,
            allow_sha1: false,
            allow_3des: false,
            allow_rc2: false,
            max_path_length: 5,
            required_policies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mailbox {
    /// Most bytes one address's mailbox may hold; 0 is no limit. A message that would go over
    /// is processed but not delivered: the sender gets a failed MDN (SPEC E29).
    pub quota: Size,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub timeout: Duration,
    /// Put `processed` MDNs in the sender's mailbox too (dispatched/failed always are).
    pub deliver_processed_mdns: bool,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            timeout: Duration::from_secs(3600),
            deliver_processed_mdns: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Absent or empty disables the HTTP API.
    #[serde(deserialize_with = "opt_socket_addr")]
    pub listen: Option<SocketAddr>,
    pub max_body_size: Size,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            max_body_size: Size(70 * 1024 * 1024),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keys {
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsServer {
    #[serde(deserialize_with = "opt_socket_addr")]
    pub listen: Option<SocketAddr>,
    pub zone: Option<String>,
    /// When set, also answer A/AAAA and MX for the local domains with this address.
    pub address: Option<std::net::IpAddr>,
}

/// A byte count written as `50MiB`, `10MB`, `512KiB`, `4096` or a bare integer.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1000,
            "kib" => 1024,
            "mb" | "m" => 1000 * 1000,
            "mib" => 1024 * 1024,
            "gb" | "g" => 1000 * 1000 * 1000,
            "gib" => 1024 * 1024 * 1024,
            _ => {
                return Err(format!(
                    "invalid size {text:?}: unknown unit (use B, KB, KiB, MB, MiB, GB, GiB)"
                ));
            }
        };
        let not_a_number =
            || format!("invalid size {text:?}: expected a number followed by a unit, e.g. 50MiB");
        let out_of_range = || format!("invalid size {text:?}: out of range");
        if !num.contains('.') {
            // Exact integer arithmetic: f64 would round sizes above 2^53 and saturate at 2^64.
            let n: u64 = num.parse().map_err(|e: std::num::ParseIntError| {
                if *e.kind() == std::num::IntErrorKind::PosOverflow {
                    out_of_range()
                } else {
                    not_a_number()
                }
            })?;
            return n.checked_mul(factor).map(Size).ok_or_else(out_of_range);
        }
        let value: f64 = num.parse().map_err(|_| not_a_number())?;
        let bytes = value * factor as f64;
        // 2^64 as f64 is exactly representable; anything at or above it doesn't fit.
        if !(0.0..18_446_744_073_709_551_616.0).contains(&bytes) {
            return Err(out_of_range());
        }
        Ok(Size(bytes as u64))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1024 * 1024;
        if self.0 >= MIB && self.0.is_multiple_of(MIB) {
            write!(f, "{}MiB", self.0 / MIB)
        } else if self.0 >= 1024 && self.0.is_multiple_of(1024) {
            write!(f, "{}KiB", self.0 / 1024)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrText::deserialize(d)? {
            NumOrText::Num(n) if n >= 0 => Ok(Size(n as u64)),
            NumOrText::Num(n) => Err(serde::de::Error::custom(format!(
                "invalid size {n}: negative"
            ))),
            NumOrText::Text(t) => Size::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as `15m`, `1h30m`, `3d`, `500ms`, `30s`, or a bare integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Duration {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad =
            |why: &str| format!("invalid duration {text:?}: {why} (use e.g. 30s, 15m, 1h30m, 3d)");
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        if let Ok(secs) = t.parse::<u64>() {
            return Ok(Duration::from_secs(secs));
        }
        let mut total_ms: u128 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u128 = rest[..digits]
                .parse()
                .map_err(|_| bad("number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit_ms: u128 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "" => return Err(bad("missing unit")),
                _ => return Err(bad("unknown unit")),
            };
            rest = &rest[unit_len..];
            total_ms = total_ms
                .checked_add(n.checked_mul(unit_ms).ok_or_else(|| bad("too large"))?)
                .ok_or_else(|| bad("too large"))?;
        }
        let ms = u64::try_from(total_ms).map_err(|_| bad("too large"))?;
        Ok(Duration(std::time::Duration::from_millis(ms)))
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ];
        if ms == 0 {
            return write!(f, "0s");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let mut rest = ms;
        for (size, unit) in units {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrText::deserialize(d)? {
            NumOrText::Num(n) if n >= 0 => Ok(Duration::from_secs(n as u64)),
            NumOrText::Num(n) => Err(serde::de::Error::custom(format!(
                "invalid duration {n}: negative"
            ))),
            NumOrText::Text(t) => Duration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(i64),
    Text(String),
}

fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("invalid listen address {text:?}: expected IP:PORT, e.g. 0.0.0.0:25 or [::]:25")
    })
}

fn socket_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_socket_addr(s).map_err(serde::de::Error::custom))
        .collect()
}

fn opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    parse_socket_addr(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl Config {
    /// Parses TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0),
            message: e.message().trim().replace('\n', " "),
        })?;
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner().to_string();
                let message = inner.lines().next().unwrap_or_default().trim().to_string();
                unknown_key_error(&key, &message).unwrap_or_else(|| key_error(&key, message))
            })?;
        config.finish()?;
        Ok(config)
    }

    /// Fills values that default from other keys, then validates.
    fn finish(&mut self) -> Result<(), ConfigError> {
        if self.database.url.trim().is_empty() {
            self.database.url = format!("sqlite://{}", self.data_dir.join("hisp.db").display());
        }
        self.validate()
    }

    /// `--config`/`HISP_CONFIG` (given as `explicit`), else `config/hisp.toml` if present,
    /// else built-in defaults.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Source), ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let default = PathBuf::from("config/hisp.toml");
                if !default.exists() {
                    let mut config = Config::default();
                    config.finish()?;
                    return Ok((config, Source::Defaults));
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let config = Config::from_toml(&text, &path)?;
        Ok((config, Source::File(path)))
    }

    /// Cross-field checks the type system can't express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hostname.trim().is_empty() || self.hostname.contains(char::is_whitespace) {
            return Err(key_error(
                "hostname",
                "must be a host name such as hisp.example.org",
            ));
        }
        let url = &self.database.url;
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let file = rest.trim_start_matches("//");
            let file = file.split('?').next().unwrap_or_default();
            if file.is_empty() && !rest.contains("mode=memory") {
                return Err(key_error(
                    "database.url",
                    "names no database file (e.g. sqlite://data/hisp.db)",
                ));
            }
        } else if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(key_error(
                "database.url",
                "must start with sqlite:// or postgres:// (e.g. sqlite://data/hisp.db)",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(key_error("database.max_connections", "must be at least 1"));
        }
        if self.smtp.tls_cert.is_some() != self.smtp.tls_key.is_some() {
            return Err(key_error(
                "smtp.tls_key",
                "tls_cert and tls_key must be set together",
            ));
        }
        if self.smtp.max_line_length.0 < 1000 {
            return Err(key_error(
                "smtp.max_line_length",
                "must be at least 1000 bytes (RFC 5321 4.5.3.1.6)",
            ));
        }
        if self.smtp.max_message_size.0 == 0 {
            return Err(key_error(
                "smtp.max_message_size",
                "must be greater than zero",
            ));
        }
        if self.smtp.max_recipients == 0 {
            return Err(key_error("smtp.max_recipients", "must be at least 1"));
        }
        let positive = [
            ("smtp.command_timeout", self.smtp.command_timeout),
            ("smtp.data_timeout", self.smtp.data_timeout),
            ("delivery.give_up_after", self.delivery.give_up_after),
            ("delivery.lease", self.delivery.lease),
            ("delivery.connect_timeout", self.delivery.connect_timeout),
            ("dns.timeout", self.dns.timeout),
            ("discovery.ldap_timeout", self.discovery.ldap_timeout),
            ("discovery.fetch_timeout", self.discovery.fetch_timeout),
            ("notifications.timeout", self.notifications.timeout),
        ];
        for (key, d) in positive {
            if d.0.is_zero() {
                return Err(key_error(key, "must be longer than zero"));
            }
        }
        if self.delivery.retry.iter().any(|d| d.0.is_zero()) {
            return Err(key_error(
                "delivery.retry",
                "intervals must be longer than zero",
            ));
        }
        for (domain, hop) in &self.delivery.routes {
            if crate::address::normalize_domain(domain).as_deref() != Ok(domain.as_str()) {
                return Err(key_error(
                    &format!("delivery.routes.{domain}"),
                    "the key must be a lower-case domain name such as hisp-b.example",
                ));
            }
            if hop.starts_with(':') {
                return Err(key_error(
                    &format!("delivery.routes.{domain}"),
                    format!("invalid next hop {hop:?}: expected host:port"),
                ));
            }
            if !hop.contains(':') {
                return Err(key_error(
                    &format!("delivery.routes.{domain}"),
                    format!("invalid next hop {hop:?}: expected host:port"),
                ));
            }
            let port = hop.rsplit(':').next().unwrap_or_default();
            if port.parse::<u16>().is_err() {
                return Err(key_error(
                    &format!("delivery.routes.{domain}"),
                    format!("invalid port in next hop {hop:?}"),
                ));
            }
        }
        if self.delivery.retry.is_empty() {
            return Err(key_error("delivery.retry", "needs at least one interval"));
        }
        if self.delivery.workers == 0 {
            return Err(key_error("delivery.workers", "must be at least 1"));
        }
        if self.security.max_path_length == 0 {
            return Err(key_error("security.max_path_length", "must be at least 1"));
        }
        for oid in &self.security.required_policies {
            let ok = oid.split('.').count() >= 2
                && oid
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(key_error(
                    "security.required_policies",
                    format!("{oid:?} is not a dotted OID like 1.3.6.1.4.1.41179.0.1.2"),
                ));
            }
        }
        if self.dns_server.listen.is_some() && self.dns_server.zone.is_none() {
            return Err(key_error(
                "dns_server.zone",
                "must be set when dns_server.listen is",
            ));
        }
        Ok(())
    }
}

/// Rewrites serde's 'unknown field' message into one naming the full key and the known ones.
fn unknown_key_error(parent: &str, message: &str) -> Option<ConfigError> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, expected) = rest.split_once('`')?;
    // serde_path_to_error's path already ends in the unknown key; keep a fallback anyway.
    let key = if parent.is_empty() || parent == "." {
        name.to_string()
    } else if parent == name || parent.ends_with(&format!(".{name}")) {
        parent.to_string()
    } else {
        format!("{parent}.{name}")
    };
    let known = expected
        .trim_start_matches(',')
        .trim()
        .trim_start_matches("expected one of ")
        .trim_start_matches("expected ")
        .replace('`', "");
    Some(key_error(
        &key,
        format!("unknown key (known keys here: {known})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.database.url, "sqlite://data/hisp.db");
        assert_eq!(c.smtp.max_message_size, Size(50 * 1024 * 1024));
        assert_eq!(c.notifications.timeout, Duration::from_secs(3600));
        assert_eq!(c.security.key_transport, KeyTransport::RsaOaep);
        assert_eq!(c.delivery.retry.len(), 5);
        assert_eq!(c.api.listen, Some("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn interface_example_parses() {
        let c = parse(include_str!("../config/hisp.toml")).unwrap();
        assert_eq!(c.security.crl, CrlMode::SoftFail);
        let text = r#"
hostname = "hisp-a.example"
[database]
url = "postgres://hisp@127.0.0.1:5432/hisp"
[smtp]
listen = ["0.0.0.0:25"]
submission_listen = ["0.0.0.0:587"]
tls_cert = "certs/tls.pem"
tls_key = "certs/tls.key"
require_tls_for_auth = true
max_message_size = "50MiB"
[delivery]
routes = { "hisp-b.example" = "127.0.0.1:2526" }
retry = ["1m", "5m", "15m", "1h", "4h"]
give_up_after = "3d"
[dns]
nameservers = ["127.0.0.1:5353"]
[security]
key_transport = "rsa-pkcs1"
content_cipher = "aes-128-gcm"
crl = "hard-fail"
[notifications]
timeout = "1h"
[api]
listen = "127.0.0.1:8080"
[keys]
master_key_file = "/etc/hisp/master.key"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.hostname, "hisp-a.example");
        assert_eq!(c.delivery.routes["hisp-b.example"], "127.0.0.1:2526");
        assert_eq!(c.delivery.give_up_after, Duration::from_secs(3 * 86400));
        assert_eq!(
            c.dns.nameservers,
            vec!["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.security.key_transport, KeyTransport::RsaPkcs1);
        assert_eq!(c.security.content_cipher, ContentCipher::Aes128Gcm);
        assert_eq!(c.security.crl, CrlMode::HardFail);
        assert_eq!(
            c.keys.master_key_file.as_deref(),
            Some(Path::new("/etc/hisp/master.key"))
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("50MiB"), Ok(Size(52_428_800)));
        assert_eq!(Size::parse("10 MB"), Ok(Size(10_000_000)));
        assert_eq!(Size::parse("512kib"), Ok(Size(524_288)));
        assert_eq!(Size::parse("4096"), Ok(Size(4096)));
        assert_eq!(Size::parse("1.5KiB"), Ok(Size(1536)));
        assert!(Size::parse("50XB").is_err());
        assert!(Size::parse("MiB").is_err());
        assert!(Size::parse("").is_err());
        assert_eq!(Size(52_428_800).to_string(), "50MiB");
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(Duration::parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(Duration::parse("3d"), Ok(Duration::from_secs(259_200)));
        assert_eq!(Duration::parse("45"), Ok(Duration::from_secs(45)));
        assert_eq!(Duration::parse("500ms").unwrap().std().as_millis(), 500);
        for bad in ["", "m", "15x", "1h30", "-5m", "99999999999999999999d"] {
            assert!(Duration::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Duration::from_secs(5400).to_string(), "1h30m");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[smtp]\nmax_mesage_size = \"1MiB\"\n").unwrap_err();
        assert!(
            e.starts_with("config key `smtp.max_mesage_size`: unknown key"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let e = parse("hostnme = \"x\"\n").unwrap_err();
        assert!(e.starts_with("config key `hostnme`: unknown key"), "{e}");
        let e = parse("[nosuch]\na = 1\n").unwrap_err();
        assert!(e.starts_with("config key `nosuch`: unknown key"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                "[smtp]\nmax_message_size = \"lots\"\n",
                "smtp.max_message_size",
            ),
            ("[delivery]\nretry = [\"1m\", \"5q\"]\n", "delivery.retry"),
            ("[security]\ncrl = \"sometimes\"\n", "security.crl"),
            (
                "[security]\ncontent_cipher = \"des\"\n",
                "security.content_cipher",
            ),
            ("[smtp]\nlisten = [\"localhost\"]\n", "smtp.listen"),
            (
                "[smtp]\nrequire_tls_for_auth = \"yes\"\n",
                "smtp.require_tls_for_auth",
            ),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            ("[smtp]\ntls_cert = \"a.pem\"\n", "smtp.tls_key"),
            (
                "[delivery]\nroutes = { \"b.example\" = \"nohost\" }\n",
                "delivery.routes.b.example",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(&format!("`{key}")), "{text:?} gave {e}");
            assert!(!e.contains('\n'), "multi-line error: {e}");
        }
    }

    #[test]
    fn database_defaults_under_data_dir() {
        assert_eq!(parse("").unwrap().database.url, "sqlite://data/hisp.db");
        let c = parse("data_dir = \"/var/lib/hisp\"\n").unwrap();
        assert_eq!(c.database.url, "sqlite:///var/lib/hisp/hisp.db");
        let c = parse("data_dir = \"/x\"\n[database]\nurl = \"sqlite://other.db\"\n").unwrap();
        assert_eq!(c.database.url, "sqlite://other.db");
        let e = parse("[database]\nurl = \"sqlite://\"\n").unwrap_err();
        assert!(e.contains("`database.url`"), "{e}");
        let c = parse("[database]\nurl = \"postgres://u:pw@h/db\"\n").unwrap();
        assert!(
            !format!("{c:?}").contains("pw@"),
            "password in Debug output"
        );
    }

    #[test]
    fn zero_and_out_of_range_values_are_refused() {
        for (text, key) in [
            ("[delivery]\nlease = \"0s\"\n", "delivery.lease"),
            ("[delivery]\nretry = [\"1m\", \"0m\"]\n", "delivery.retry"),
            ("[notifications]\ntimeout = 0\n", "notifications.timeout"),
            (
                "[smtp]\nmax_message_size = \"18446744073709551616\"\n",
                "smtp.max_message_size",
            ),
            (
                "[smtp]\nmax_message_size = \"17179869184GiB\"\n",
                "smtp.max_message_size",
            ),
            (
                "[delivery]\nroutes = { \"B.Example\" = \"h:25\" }\n",
                "delivery.routes.B.Example",
            ),
            (
                "[delivery]\nroutes = { \"b.example\" = \":25\" }\n",
                "delivery.routes.b.example",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(&format!("`{key}`")), "{text:?} gave {e}");
        }
        assert_eq!(
            Size::parse("9007199254740993"),
            Ok(Size(9_007_199_254_740_993))
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse("hostname = \"a\"\n[smtp\n").unwrap_err();
        assert!(e.starts_with("config file test.toml line 2:"), "{e}");
        assert!(!e.contains('\n'));
    }
}
