//! Private OpenLDAP `slapd` instances for LDAP certificate-discovery tests.
//!
//! Each [`Slapd`] is a real server on its own loopback port with its own mdb database, config
//! and log in a scratch directory, so tests run in parallel and never touch (or depend on) a
//! system slapd such as the one Debian's package starts on port 389. Entries are loaded and
//! inspected with the OpenLDAP command-line tools (`ldapadd`, `ldapsearch`), never with hisp's
//! own LDAP client: the harness must not share bugs with the code under test.
//!
//! slapd runs as the current user (no `-u`/`-g`): dropping to an `openldap` user would leave
//! it unable to read a scratch directory made by root in CI.
//!
//! Tests call [`slapd_available`] first. Without `CI` a machine lacking slapd skips with a
//! note; with `CI` set it panics, because a discovery suite that silently skipped its LDAP half
//! would prove nothing.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::TempDir;

/// How long a fresh slapd gets to answer a root-DSE search. Generous: CI machines are shared
/// with parallel compiles.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on every `ldapadd`/`ldapsearch` run, so a wedged server fails a test instead of
/// stalling the suite.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Password of every instance's rootdn; only reachable on loopback for the test's lifetime.
pub const ROOT_PW: &str = "hisp-test-secret";

/// Which attribute(s) [`cert_entry_ldif`] puts the certificate in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertAttr {
    /// `userSMIMECertificate` (RFC 2798).
    Smime,
    /// `userCertificate;binary` (RFC 4523).
    UserCertificate,
    /// Both of the above, each holding every certificate.
    Both,
}

/// The slapd binary: `HISP_TEST_SLAPD` if set, else Debian's `/usr/sbin/slapd`, else `PATH`.
pub fn slapd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HISP_TEST_SLAPD").filter(|p| !p.is_empty()) {
        // An explicit choice that doesn't exist counts as missing, not as "try the default".
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let debian = Path::new("/usr/sbin/slapd");
    if debian.is_file() {
        return Some(debian.to_path_buf());
    }
    find_in_path("slapd")
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn schema_dir() -> Option<PathBuf> {
    ["/etc/ldap/schema", "/etc/openldap/schema"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("inetorgperson.schema").is_file())
}

/// Whether slapd and the OpenLDAP client tools are installed. Under CI their absence is a
/// failure (panic), elsewhere a skip with a note, as with `postgres_base_url`.
pub fn slapd_available() -> bool {
    let mut missing = Vec::new();
    if slapd_binary().is_none() {
        missing.push("slapd");
    }
    for tool in ["ldapadd", "ldapmodify", "ldapsearch"] {
        if find_in_path(tool).is_none() {
            missing.push(tool);
        }
    }
    if schema_dir().is_none() {
        missing.push("schema files (inetorgperson.schema)");
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI is set but {} missing: install the slapd and ldap-utils packages (scripts/test does)",
            missing.join(", ")
        );
    }
    eprintln!(
        "note: {} missing; skipping the LDAP test (install slapd ldap-utils, or run scripts/test as root)",
        missing.join(", ")
    );
    false
}

/// A loopback port nothing listens on right now, e.g. for a "server is down" URL.
///
/// Racy by nature: the port is free when we drop our socket, and another process may bind it
/// before the caller uses it. Ephemeral ports cycle slowly enough that this is rare; callers
/// that start a server on it must retry on "address in use" (as [`Slapd::start`] does).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

/// `ldap://127.0.0.1:PORT` with nothing listening: connecting is refused.
pub fn dead_ldap_url() -> String {
    format!("ldap://127.0.0.1:{}", free_port())
}

/// A running private slapd; killed and its directory removed on drop.
pub struct Slapd {
    pub port: u16,
    /// `ldap://127.0.0.1:PORT`
    pub url: String,
    /// The database suffix, e.g. `dc=hisp-b,dc=example`; the only namingContext.
    pub suffix: String,
    /// `cn=admin,<suffix>`, password [`ROOT_PW`].
    pub rootdn: String,
    dir: TempDir,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

impl Slapd {
    /// Starts a slapd on a free loopback port with an mdb database for `suffix`, schemas core,
    /// cosine and inetorgperson, anonymous read access to everything, then creates the suffix
    /// entry and adds `ldif` (which may be empty). Panics with slapd's log if it won't start.
    ///
    /// The suffix's first RDN must be `dc`, `o`, `ou` or `c` so its entry can be created, and
    /// DNs must not contain escaped commas (the parsing here is deliberately naive).
    pub fn start(suffix: &str, ldif: &str) -> Slapd {
        let slapd = slapd_binary().expect("slapd not installed: check slapd_available() first");
        let schemas = schema_dir().expect("OpenLDAP schema files not found");
        let dir = TempDir::new("slapd");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        let conf = dir.path().join("slapd.conf");
        let log = dir.path().join("slapd.log");
        let rootdn = format!("cn=admin,{suffix}");
        std::fs::write(
            &conf,
            slapd_conf(&slapd, &schemas, dir.path(), &db, suffix, &rootdn),
        )
        .unwrap();
        let mut me = Slapd {
            port: 0,
            url: String::new(),
            suffix: suffix.to_owned(),
            rootdn,
            dir,
            conf,
            log,
            child: None,
        };
        // free_port() races with every other process picking ports; a lost race shows up as
        // slapd exiting with EADDRINUSE, so try a few fresh ports before giving up.
        let mut attempt = 0;
        loop {
            attempt += 1;
            me.port = free_port();
            me.url = format!("ldap://127.0.0.1:{}", me.port);
            match me.launch() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                // The scratch directory is gone once the panic unwinds, so show the config.
                Err(log) => panic!(
                    "slapd for {suffix} did not start on {} (attempt {attempt}); log:\n{log}\nslapd.conf:\n{}",
                    me.url,
                    std::fs::read_to_string(&me.conf).unwrap_or_default()
                ),
            }
        }
        let mut entries = suffix_entry_ldif(suffix);
        if !ldif.trim().is_empty() {
            entries.push('\n');
            entries.push_str(ldif.trim());
            entries.push('\n');
        }
        me.add(&entries);
        me
    }

    /// Spawns slapd on `self.port` and waits until it answers an anonymous root-DSE search
    /// listing our suffix. On failure returns slapd's log (the process is reaped).
    fn launch(&mut self) -> Result<(), String> {
        let binary = slapd_binary().unwrap();
        let log = std::fs::File::create(&self.log).unwrap();
        let pidfile = self.dir.path().join("slapd.pid");
        let _ = std::fs::remove_file(&pidfile);
        // "none" still logs the messages slapd emits at any level (bind failures, config
        // errors), which `-d 0` would swallow; -d also keeps slapd in the foreground so we
        // own its pid. HISP_TEST_SLAPD_LOGLEVEL=stats helps when debugging a test.
        let level = std::env::var("HISP_TEST_SLAPD_LOGLEVEL").unwrap_or_else(|_| "none".into());
        let mut child = Command::new(&binary)
            .arg("-h")
            .arg(format!("{}/", self.url))
            .arg("-f")
            .arg(&self.conf)
            .arg("-d")
            .arg(&level)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_search = String::new();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("slapd exited ({status}):\n{}", self.log_text()));
            }
            // slapd writes its pidfile only after binding its listener, so our pid in our
            // pidfile proves the server answering on the port is this one, not another test's
            // instance (with the same suffix) that won a race for the port.
            let ours =
                std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim() == child.id().to_string());
            if ours && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                match self.root_dse() {
                    Ok(dse) if dse_lists(&dse, &self.suffix) => return Ok(()),
                    Ok(dse) => last_search = format!("root DSE lacks the suffix:\n{dse}"),
                    Err(e) => last_search = e,
                }
                child = self.child.take().unwrap();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not ready within {START_TIMEOUT:?}; last root-DSE search: {last_search}\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds entries (plain LDIF, no changetype) as the rootdn. Panics with ldapadd's error.
    pub fn add(&self, ldif: &str) {
        self.ldap_write("ldapadd", ldif);
    }

    /// Applies change-LDIF (`changetype: modify` / `delete` / ...) as the rootdn.
    pub fn modify(&self, ldif: &str) {
        self.ldap_write("ldapmodify", ldif);
    }

    fn ldap_write(&self, tool: &str, ldif: &str) {
        let file = self.dir.path().join(format!(
            "{tool}-{}.ldif",
            CALLS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, ldif).unwrap();
        let mut cmd = ldap_tool(tool);
        cmd.args([
            "-x",
            "-H",
            &self.url,
            "-D",
            &self.rootdn,
            "-w",
            ROOT_PW,
            "-f",
        ])
        .arg(&file);
        let out = run_bounded(cmd);
        assert!(
            out.status.success(),
            "{tool} on {} failed ({}): {}{}\nLDIF ({}):\n{ldif}\nslapd log:\n{}",
            self.url,
            out.status,
            out.stderr,
            out.stdout,
            file.display(),
            self.log_text()
        );
    }

    /// `ldapsearch -x -LLL` (anonymous, unwrapped LDIF) under the suffix; returns the LDIF.
    /// Panics if the search fails; no match is an empty string.
    pub fn search(&self, filter: &str, attrs: &[&str]) -> String {
        ldapsearch(&self.url, &self.suffix, "sub", filter, attrs)
            .unwrap_or_else(|e| panic!("{e}\nslapd log:\n{}", self.log_text()))
    }

    fn root_dse(&self) -> Result<String, String> {
        ldapsearch(
            &self.url,
            "",
            "base",
            "(objectClass=*)",
            &["namingContexts"],
        )
    }

    /// Kills the server; its port then refuses connections (until someone else takes it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data, e.g. to test recovery.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() of a running slapd");
        if let Err(log) = self.launch() {
            panic!("slapd restart on {} failed:\n{log}", self.url);
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// slapd's own output so far (at the `HISP_TEST_SLAPD_LOGLEVEL` level).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn slapd_conf(
    slapd: &Path,
    schemas: &Path,
    dir: &Path,
    db: &Path,
    suffix: &str,
    rootdn: &str,
) -> String {
    let mut c = String::new();
    for schema in ["core", "cosine", "inetorgperson"] {
        c += &format!(
            "include \"{}\"\n",
            schemas.join(format!("{schema}.schema")).display()
        );
    }
    // Debian builds back_mdb as a loadable module; other builds link it in, and loading a
    // built-in backend again is an error, so only load what exists as a module.
    if let Some(modules) = module_dir(slapd) {
        c += &format!(
            "modulepath \"{}\"\nmoduleload back_mdb\n",
            modules.display()
        );
    }
    c += &format!(
        "pidfile \"{}\"\nargsfile \"{}\"\n",
        dir.join("slapd.pid").display(),
        dir.join("slapd.args").display()
    );
    // Before the first `database`: applies to the frontend too, so the root DSE (where
    // discovery reads namingContexts) and subschema are anonymously readable.
    c += "access to * by * read\n";
    c += &format!(
        "database mdb\nmaxsize 67108864\nsuffix \"{suffix}\"\nrootdn \"{rootdn}\"\nrootpw \"{ROOT_PW}\"\ndirectory \"{}\"\n",
        db.display()
    );
    c
}

fn module_dir(slapd: &Path) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/lib/ldap")];
    if let Some(prefix) = slapd.parent().and_then(Path::parent) {
        candidates.push(prefix.join("lib/ldap"));
        candidates.push(prefix.join("libexec/openldap"));
    }
    candidates
        .into_iter()
        .find(|d| d.join("back_mdb.so").exists() || d.join("back_mdb.la").exists())
}

/// `(attribute, value)` of the first RDN of `dn`.
fn first_rdn(dn: &str) -> (&str, &str) {
    let rdn = dn.split(',').next().unwrap_or(dn);
    let (attr, value) = rdn
        .split_once('=')
        .unwrap_or_else(|| panic!("not a DN: {dn:?}"));
    (attr.trim(), value.trim())
}

fn suffix_entry_ldif(suffix: &str) -> String {
    let (attr, value) = first_rdn(suffix);
    let body = match attr.to_ascii_lowercase().as_str() {
        "dc" => {
            format!("objectClass: dcObject\nobjectClass: organization\ndc: {value}\no: {value}")
        }
        "o" => format!("objectClass: organization\no: {value}"),
        "ou" => format!("objectClass: organizationalUnit\nou: {value}"),
        "c" => format!("objectClass: country\nc: {value}"),
        other => panic!("suffix {suffix:?}: cannot create an entry named by {other:?}"),
    };
    format!("dn: {suffix}\nobjectClass: top\n{body}\n")
}

/// LDIF for an inetOrgPerson entry `dn` with `mail` and the certificate DER in the attributes
/// `attrs` selects. `mail` may also be a bare domain, for domain-bound certificates.
pub fn cert_entry_ldif(dn: &str, mail: &str, der: &[u8], attrs: CertAttr) -> String {
    certs_entry_ldif(dn, mail, &[der], attrs)
}

/// Like [`cert_entry_ldif`] with several certificates (e.g. separate signing and encryption
/// certificates, or a valid one next to an expired one), each a value of the attribute(s).
pub fn certs_entry_ldif(dn: &str, mail: &str, ders: &[&[u8]], attrs: CertAttr) -> String {
    let (rdn_attr, rdn_value) = first_rdn(dn);
    let rdn_attr = rdn_attr.to_ascii_lowercase();
    // slapd rejects an entry whose RDN value isn't among its attribute values.
    let cn = if rdn_attr == "cn" { rdn_value } else { mail };
    let sn = mail.split('@').next().unwrap_or(mail);
    let mut l = format!(
        "dn: {dn}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: inetOrgPerson\ncn: {cn}\nsn: {sn}\nmail: {mail}\n"
    );
    if !["cn", "sn", "mail"].contains(&rdn_attr.as_str()) {
        l += &format!("{rdn_attr}: {rdn_value}\n");
    }
    let names: &[&str] = match attrs {
        CertAttr::Smime => &["userSMIMECertificate"],
        CertAttr::UserCertificate => &["userCertificate;binary"],
        CertAttr::Both => &["userSMIMECertificate", "userCertificate;binary"],
    };
    for name in names {
        for der in ders {
            l += &format!("{name}:: {}\n", openssl::base64::encode_block(der));
        }
    }
    l
}

/// The values of `attr` (matched case-insensitively, options included, e.g.
/// `userCertificate;binary`) in unwrapped LDIF as `ldapsearch -LLL -o ldif-wrap=no` prints it;
/// `attr:: base64` values are decoded.
pub fn ldif_values(ldif: &str, attr: &str) -> Vec<Vec<u8>> {
    ldif.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            if !name.eq_ignore_ascii_case(attr) {
                return None;
            }
            Some(match rest.strip_prefix(':') {
                Some(b64) => openssl::base64::decode_block(b64.trim())
                    .unwrap_or_else(|e| panic!("bad base64 for {attr}: {e}")),
                None => rest.trim_start().as_bytes().to_vec(),
            })
        })
        .collect()
}

fn dse_lists(dse: &str, suffix: &str) -> bool {
    ldif_values(dse, "namingContexts")
        .iter()
        .any(|v| String::from_utf8_lossy(v).eq_ignore_ascii_case(suffix))
}

/// Anonymous `ldapsearch -x -LLL` against any URL; Err carries the tool's error output.
pub fn ldapsearch(
    url: &str,
    base: &str,
    scope: &str,
    filter: &str,
    attrs: &[&str],
) -> Result<String, String> {
    let mut cmd = ldap_tool("ldapsearch");
    cmd.args(["-x", "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=10"])
        .args(["-H", url, "-s", scope, "-b", base, filter])
        .args(attrs);
    let out = run_bounded(cmd);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "ldapsearch -H {url} -b {base:?} {filter} failed ({}): {}",
            out.status, out.stderr
        ))
    }
}

fn ldap_tool(program: &str) -> Command {
    let mut cmd = Command::new(program);
    // Ignore /etc/ldap/ldap.conf and ~/.ldaprc: a BASE, URI or TLS setting there (e.g. from
    // the system slapd's setup) must not change what the tests see.
    cmd.env("LDAPNOINIT", "1");
    cmd
}

struct ToolOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion or kills it after [`TOOL_TIMEOUT`].
fn run_bounded(mut cmd: Command) -> ToolOutput {
    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    // Drain both pipes on threads so a chatty tool can't block on a full pipe while we poll.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} did not finish within {TOOL_TIMEOUT:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ToolOutput {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}
