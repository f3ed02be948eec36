//! The `hisp` command line: argument definitions, the shared context, exit codes.
//! One file per command group.

mod address;
mod anchor;
mod audit;
mod bench;
mod bundle;
mod cert;
mod config_cmd;
mod demo;
mod discover;
mod domain;
mod mailbox;
mod output;
mod pair;
mod queue;
mod serve;
mod status;
mod token;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Source};
use crate::keys::{KeySource, MasterKey, MasterKeyError};
use crate::store::{Store, StoreError};

#[derive(Parser, Debug)]
#[command(
    name = "hisp",
    version,
    about = "Direct secure-messaging gateway (HISP)"
)]
pub struct Cli {
    /// Config file (default: config/hisp.toml if present, else built-in defaults).
    #[arg(long, global = true, env = "HISP_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print lists and results as one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway: SMTP listeners until SIGTERM.
    Serve,
    /// Local domains this HISP sends and receives for.
    #[command(subcommand)]
    Domain(domain::DomainCmd),
    /// Local Direct addresses (mailboxes and logins).
    #[command(subcommand)]
    Address(address::AddressCmd),
    /// Private keys and certificates of local addresses and domains.
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// Trust anchors per local domain.
    #[command(subcommand)]
    Anchor(anchor::AnchorCmd),
    /// Trust bundles (.p7b) whose certificates are anchors of local domains.
    #[command(subcommand)]
    Bundle(bundle::BundleCmd),
    /// Two gateways, a dev PKI and local DNS on this machine; one referral end to end.
    Demo,
    /// End-to-end throughput of two gateways on loopback, and this machine's RSA ceiling.
    Bench(bench::BenchArgs),
    /// Messages delivered to a local address.
    #[command(subcommand)]
    Mailbox(mailbox::MailboxCmd),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Find a recipient's certificates (DNS CERT, LDAP) and show every step and verdict.
    Discover(discover::DiscoverArgs),
    /// Delivery state of an outbound message, per recipient.
    Status {
        /// The Message-ID (with or without angle brackets).
        message_id: String,
    },
    /// The delivery queue.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// API bearer tokens.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Check the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
}

/// What went wrong, and so which exit code (INTERFACE.md): 2 usage/config, 3 not found, 1 other.
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    NotFound(String),
    Failed(anyhow::Error),
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::NotFound(m) => f.write_str(m),
            // One line: the chain joined, so scripts and journals get the whole cause.
            CliError::Failed(e) => write!(f, "{}", format!("{e:#}").replace('\n', " ")),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => CliError::NotFound(m),
            other => CliError::Failed(other.into()),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failed(e)
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError::Usage(e.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Everything a command needs: the config, the opened store, the master key, output mode.
pub struct Ctx {
    pub config: Config,
    pub source: Source,
    pub store: Store,
    pub master: std::sync::Arc<MasterKey>,
    pub json: bool,
}

const MASTER_CHECK_KEY: &str = "master_key_check";

impl Ctx {
    async fn open(config: Config, source: Source, json: bool) -> CliResult<Ctx> {
        let store = Store::open(&config.database.url, config.database.max_connections).await?;
        let master = open_master_key(&config, &store).await?;
        Ok(Ctx {
            config,
            source,
            // Every admin change a command makes is audited in its own transaction.
            store: store.acting_as(&cli_actor()),
            master: std::sync::Arc::new(master),
            json,
        })
    }

    /// Who did it, for the audit log.
    pub fn actor(&self) -> String {
        cli_actor()
    }
}

/// The operating-system user behind a command (through sudo too), for the audit log.
fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_string());
    format!("cli:{user}")
}

/// Finds the master key and checks it against the value recorded in the store, so a wrong
/// key is reported up front rather than as undecryptable keys later.
async fn open_master_key(config: &Config, store: &Store) -> CliResult<MasterKey> {
    let recorded = store.meta_get(MASTER_CHECK_KEY).await?;
    let env = std::env::var("HISP_MASTER_KEY").ok();
    let key = MasterKey::resolve(
        env.as_deref(),
        config.keys.master_key_file.as_deref(),
        &config.data_dir,
        recorded.is_none(),
    )
    .map_err(master_error)?;
    if let KeySource::Generated(path) = &key.source {
        eprintln!(
            "hisp: created a new master key at {} (mode 0600). Back it up: the private keys in the store cannot be used without it.",
            path.display()
        );
    }
    if let KeySource::File(path) = &key.source {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "hisp: warning: master key file {} is readable by other users; chmod 600 it",
                path.display()
            );
        }
    }
    let recorded = match recorded {
        Some(v) => v,
        None => {
            store
                .meta_set_if_absent(MASTER_CHECK_KEY, &key.check_value())
                .await?
        }
    };
    if !key.matches_check_value(&recorded) {
        return Err(master_error(MasterKeyError::WrongKey {
            source_name: key.source.to_string(),
            key_id: key.key_id(),
        }));
    }
    Ok(key)
}

fn master_error(e: MasterKeyError) -> CliError {
    CliError::Usage(e.to_string())
}

/// Reads a secret from the environment variable named by `--password-env`.
pub fn password_from_env(var: Option<&str>) -> CliResult<Option<String>> {
    match var {
        None => Ok(None),
        Some(name) => std::env::var(name).map(Some).map_err(|_| {
            CliError::Usage(format!(
                "--password-env {name}: environment variable {name} is not set"
            ))
        }),
    }
}

/// Fixes glibc's mmap threshold at its default of 128 KiB. Left dynamic, glibc raises it to
/// the size of the largest block freed (each argon2 password check frees 19 MiB), after
/// which every malloc arena — one per thread, and tokio's blocking pool has many — keeps
/// up to twice that in freed memory: `hisp bench` peaked at 265 MiB instead of 60 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_mmap_threshold() {
    unsafe extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_mmap_threshold() {}

pub fn main() -> ExitCode {
    fix_mmap_threshold();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hisp: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hisp: error: {e}");
            ExitCode::from(e.code())
        }
    }
}

/// Help and version go to stdout with exit 0; a bare `hisp` or group shows its help; any
/// other usage error is one line naming the flag, exit 2, like every other error.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    // clap's first paragraph says what is wrong (sometimes over several lines); the rest is
    // usage text that --help shows better.
    let rendered = e.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = paragraph.join(" ");
    let message = joined.strip_prefix("error: ").unwrap_or(&joined);
    eprintln!("hisp: error: {message} (see `hisp --help`)");
    ExitCode::from(2)
}

async fn run(cli: Cli) -> CliResult {
    if let Command::Demo = &cli.command {
        // Self-contained: no config file, no store of the user's is touched.
        return demo::run().await;
    }
    if let Command::Bench(args) = &cli.command {
        return bench::run(args, cli.json).await;
    }
    let (config, source) = Config::load(cli.config.as_deref())?;
    if let Command::Config(cmd) = &cli.command {
        return config_cmd::run(cmd, &config, &source, cli.json);
    }
    let ctx = Ctx::open(config, source, cli.json).await?;
    let result = match cli.command {
        Command::Serve => serve::run(&ctx).await,
        Command::Domain(cmd) => domain::run(&ctx, cmd).await,
        Command::Address(cmd) => address::run(&ctx, cmd).await,
        Command::Cert(cmd) => cert::run(&ctx, cmd).await,
        Command::Anchor(cmd) => anchor::run(&ctx, cmd).await,
        Command::Bundle(cmd) => bundle::run(&ctx, cmd).await,
        Command::Discover(args) => discover::run(&ctx, args).await,
        Command::Audit(cmd) => audit::run(&ctx, cmd).await,
        Command::Mailbox(cmd) => mailbox::run(&ctx, cmd).await,
        Command::Status { message_id } => status::run(&ctx, &message_id).await,
        Command::Queue(cmd) => queue::run(&ctx, cmd).await,
        Command::Token(cmd) => token::run(&ctx, cmd).await,
        Command::Config(_) | Command::Demo | Command::Bench(_) => Ok(()),
    };
    ctx.store.close().await;
    result
}
