//! Shared test support: run the real `hisp` binary against a throwaway store on SQLite or
//! PostgreSQL, and tell the backends apart.
#![allow(dead_code)]

pub mod direct;
pub mod http;
pub mod http_client;
pub mod interop;
pub mod slapd;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fixed master key for tests that share one store between several processes.
pub const MASTER_KEY_HEX: &str = "3f1c0b6a9e2d4c5b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6978877665";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server `scripts/test` started, if any. Under CI it must exist: a test
/// that silently skipped its PostgreSQL half would prove nothing.
pub fn postgres_base_url() -> Option<String> {
    match std::env::var("HISP_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but HISP_TEST_POSTGRES_URL is not: run the suite with scripts/test, which starts PostgreSQL"
                );
            }
            eprintln!(
                "note: HISP_TEST_POSTGRES_URL unset; skipping the PostgreSQL half (scripts/test starts a server)"
            );
            None
        }
    }
}

/// The backends to run a test on: SQLite always, PostgreSQL when a server is available.
pub fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Sqlite];
    if postgres_base_url().is_some() {
        b.push(Backend::Postgres);
    }
    b
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "{tag}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("hisp-test-{}", unique(tag)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty database on the backend; returns its URL.
pub async fn fresh_database(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("hisp.db").display()),
        Backend::Postgres => {
            let base = postgres_base_url().expect("postgres requested without a server");
            let name = unique("hisp_t").to_ascii_lowercase();
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&base)
                .await
                .expect("connect to test PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await
                .expect("create test database");
            pool.close().await;
            let (prefix, _) = base.rsplit_once('/').expect("URL has a database part");
            format!("{prefix}/{name}")
        }
    }
}

/// One test's gateway environment: a working directory, a config file, a database.
pub struct Env {
    pub dir: TempDir,
    pub config: PathBuf,
    pub db_url: String,
    pub backend: Backend,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Run {
    pub fn from_output(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            raw_stdout: o.stdout,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "wrong exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("hisp: error"))
            .collect();
        assert_eq!(lines.len(), 1, "expected one error line: {}", self.stderr);
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "error output is not one line: {}",
            self.stderr
        );
        self
    }
}

impl Env {
    pub async fn new(backend: Backend) -> Env {
        let dir = TempDir::new(match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "pg",
        });
        let db_url = fresh_database(backend, dir.path()).await;
        eprintln!("test store: {backend:?} {db_url}");
        let config = dir.path().join("hisp.toml");
        std::fs::write(
            &config,
            format!(
                "hostname = \"hisp-test.example\"\ndata_dir = \"{}\"\n[api]\nlisten = \"\"\n[database]\nurl = \"{db_url}\"\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        Env {
            dir,
            config,
            db_url,
            backend,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `hisp --config <ours> args...` with the test master key, in the test directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.bare_command(&[]);
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    /// Like `command` but without `--config`, for tests of config handling itself.
    pub fn bare_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hisp"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("HISP_MASTER_KEY", MASTER_KEY_HEX)
            .env_remove("HISP_CONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().expect("run hisp"))
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from_output(c.output().expect("run hisp"))
    }

    /// `hisp cert import --p12 FILE --password-env ...` with `password`.
    pub fn import_p12(&self, p12: &Path, password: &str) -> Run {
        let file = p12.to_str().unwrap();
        let args = [
            "cert",
            "import",
            "--p12",
            file,
            "--password-env",
            "HISP_TEST_P12_PW",
        ];
        self.run_env(&args, &[("HISP_TEST_P12_PW", password)])
    }

    /// `hisp cert import --cert PEM --key PEM`.
    pub fn import_pem(&self, cert: &Path, key: &Path) -> Run {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        self.run(&["cert", "import", "--cert", cert, "--key", key])
    }

    pub async fn store(&self) -> hisp::store::Store {
        hisp::store::Store::open(&self.db_url, 2)
            .await
            .expect("open test store")
    }
}

/// Runs an external tool (openssl, ...) and returns stdout, failing the test with its stderr.
pub fn tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
