//! Drives three independent CMS implementations — the `openssl cms` CLI, GnuPG's `gpgsm` and
//! NSS's `cmsutil` — on plain bytes, so tests can prove hisp interoperates with each of them in
//! both directions. Nothing here uses hisp's own S/MIME code: a harness that shared code with
//! the thing under test could not catch the bugs the two have in common.
//!
//! gpgsm and cmsutil only speak raw CMS, so their helpers take and return CMS (as the tool
//! wrote it) and raw content; the MIME layer of a Direct message is built and taken apart by
//! the small MIME helpers at the end of this file, never by a tool.
//!
//! Every tool call runs in a fresh, throw-away state directory (GNUPGHOME or NSS database)
//! and is killed after [`TOOL_TIMEOUT`]: a hung gpg-agent must fail a test, not stall CI.
//! A missing tool panics with an install hint; these tests never skip.
//!
//! # Capability matrix
//!
//! Established by running the tools (gpgsm 2.2.40 / libksba 1.6.3 / libgcrypt 1.10.1,
//! NSS cmsutil 3.87, OpenSSL 3.0); each row is asserted by a test in `tests/interop_tools.rs`,
//! so a tool upgrade that changes a row fails loudly instead of silently shifting coverage.
//!
//! ## Consuming what OpenSSL produced
//!
//! | input (made by `openssl cms`)                     | gpgsm 2.2.40 | cmsutil 3.87 |
//! |---------------------------------------------------|--------------|--------------|
//! | EnvelopedData AES-128-CBC, RSA PKCS#1 v1.5        | yes          | yes          |
//! | EnvelopedData AES-256-CBC, RSA PKCS#1 v1.5        | yes          | yes          |
//! | EnvelopedData AES-CBC, RSA-OAEP SHA-256/MGF1-256  | NO (1)       | NO (2)       |
//! | AuthEnvelopedData AES-128-GCM / AES-256-GCM       | NO (3)       | NO (4)       |
//! | our key in the 2nd RecipientInfo                 | yes, exit 2 (5) | yes       |
//! | detached SignedData, SHA-256, signed attributes   | yes          | yes          |
//! | ... tampered content                              | rejected (6) | rejected (7) |
//! | ... signer from a CA that is not trusted          | rejected (8) | rejected (9) |
//!
//! 1. gpgsm: `recp 0 - error getting encrypted session key` then
//!    `message decryption failed: No secret key <GpgSM>` (misleading: the key is there, the
//!    OAEP algorithm is not supported); status `DECRYPTION_FAILED`.
//! 2. cmsutil: `problem decoding: SEC_ERROR_UNSUPPORTED_KEYALG: Unsupported or unknown key
//!    algorithm.`, exit 1.
//! 3. gpgsm: `error getting IV: Buffer too short` then
//!    `message decryption failed: Buffer too short <KSBA>` (it reads the GCM parameters as if
//!    they were a CBC IV).
//! 4. cmsutil: `problem decoding: SEC_ERROR_UNRECOGNIZED_OID: Unrecognized Object Identifier.`
//! 5. gpgsm decrypts and prints `DECRYPTION_OKAY`, but logs
//!    `failed to find the certificate: Unknown system error` (or `No secret key`) for every
//!    RecipientInfo before ours and therefore EXITS 2. [`gpgsm_decrypt`] trusts the status line,
//!    not the exit code. Note that RecipientInfos is a DER SET OF: openssl and NSS sort it, so
//!    "second" is decided by encoding, not by command-line order.
//! 6. gpgsm: `invalid signature: message digest attribute does not match computed one`,
//!    status `BADSIG`, exit 2.
//! 7. cmsutil: `signer 0 status = DigestMismatch`, `SEC_ERROR_PKCS7_BAD_SIGNATURE`, exit 1.
//! 8. gpgsm: status `GOODSIG` + `TRUST_UNDEFINED`, exit 2, with `invalid certification chain:
//!    Missing issuer certificate` when the issuer is unknown, or `root certificate is not
//!    marked trusted` … `Not trusted` when the signature carries a root we do not trust. A CA
//!    is trusted only through `trustlist.txt` (`<SHA-1 fingerprint> S`); 2.2 has no
//!    `--always-trust` (`invalid option`).
//! 9. cmsutil: `signer 0 status = SigningCertNotTrusted`, `SEC_ERROR_UNKNOWN_ISSUER`, exit 1.
//!
//! ## What they produce
//!
//! | property               | gpgsm 2.2.40                               | cmsutil 3.87                       |
//! |------------------------|--------------------------------------------|------------------------------------|
//! | content cipher         | AES-128-CBC default; `--cipher-algo AES256` → AES-256-CBC | AES-128-CBC; AES-256-CBC only when every recipient's RSA key is > 3072 bits (no option) |
//! | AES-GCM                | no: `--cipher-algo AES256-GCM` → `selected cipher algorithm is invalid`; the raw OID 2.16.840.1.101.3.4.1.46 is accepted but yields a non-conforming *EnvelopedData* with a GCM OID, which openssl refuses (`cipher parameter error`) | no |
//! | key transport          | RSA PKCS#1 v1.5 only                       | RSA PKCS#1 v1.5 only               |
//! | signature digest       | SHA-256 (default and `--digest-algo SHA256`), rsaEncryption | SHA-256 (`-H SHA256`, also default), rsaEncryption |
//! | signed attributes      | always: contentType, signingTime, messageDigest, smimeCapabilities | contentType, messageDigest, MS + S/MIME encryptionKeyPreference; `-G` signingTime, `-P` smimeCapabilities; with `-Y NONE` and neither `-G` nor `-P` NONE at all |
//! | detached               | `--detach-sign`                            | `-T`                               |
//! | certificates included  | signer only (`--include-certs -2`: all but the root) | signer + chain incl. root |
//! | encoding               | BER, indefinite lengths                    | BER, indefinite lengths            |
//!
//! Both tools refuse to sign with a certificate whose chain they do not trust (gpgsm status
//! `INV_SGNR`, `can't sign using '…': Not trusted`; cmsutil `ERROR: cannot add
//! SMIMEEncKeyPrefs attribute` + `SEC_ERROR_UNKNOWN_ISSUER`), and gpgsm also refuses to encrypt
//! to one (`INV_RECP`); cmsutil encrypts to any certificate in its database, trusted or not.
//!
//! ## Gotchas the helpers encode
//!
//! * gpgsm 2.2.40 cannot read OpenSSL 3's default PKCS#12 (PBES2 / AES-256-CBC /
//!   hmacWithSHA256): `encryptedData error at "pkcs5PBES2-params", offset 123` … `error
//!   parsing or decrypting the PKCS#12 file`. PBE-SHA1-3DES with a SHA-1 MAC works (so does
//!   devpki's `to_legacy_p12`); pk12util reads both.
//! * Even so, gpgsm 2.2.40 rejects about 1 in 40 valid PBE-SHA1-3DES files (`decryption
//!   failed; trying charset 'ISO-8859-1'` … `encryptedData error at "outer.outer.seq"` or
//!   `data error at "shrouded_key_bag.decrypted-text"`), always the same files: it follows the
//!   random salts, openssl reads those files, and a re-export of the same key imports. The
//!   harness re-exports and retries on exactly that error.
//! * gpgsm needs `--batch --pinentry-mode loopback --passphrase-fd 0` with an empty stdin, an
//!   empty PKCS#12 password (the key is then stored unprotected) and `allow-loopback-pinentry`
//!   in gpg-agent.conf; `pinentry-program /bin/false` makes any slip fail instead of hang.
//!   `--disable-dirmngr` keeps it offline (it then prints `CRLs not checked due to offline
//!   option`). The agent outlives gpgsm, so every home ends with `gpgconf --kill all`.
//! * gpgsm's exit code is not a verdict: it exits 0 for a certs-only "signature" with no
//!   signer at all, and 2 for a successful multi-recipient decryption. Status lines decide.
//! * cmsutil `-D -c content` exits 0 when the input has no signers (certs-only), when the input
//!   is not SignedData at all (it just decrypts), and when the signature carries its own
//!   content (it ignores `-c` and checks the embedded one); with `-h N` it exits 0 even on
//!   `DigestMismatch` / `SigningCertNotTrusted`. [`cmsutil_verify_detached`] therefore reads
//!   the `-h` report AND the exit code AND compares the content it hands back.
//! * NSS nicknames: pk12util takes the PKCS#12 friendlyName, else invents
//!   "<CN> - <O>"; `certutil -A` on a certificate already present keeps the old nickname and
//!   only changes trust. Recipients are addressed by nickname, because `-r` by e-mail has
//!   nothing to match in Direct's domain-bound certificates, which carry no e-mail address.
//! * `openssl cms -verify -binary` on an S/MIME multipart/signed fails ("content verify
//!   error") although the message is fine: openssl's multipart splitter keeps the CR of the
//!   CRLF that belongs to the boundary delimiter, so the digest covers one byte too many; only
//!   the text path strips it again. Hence no `-binary` when verifying S/MIME input.
//! * `openssl cms -crlfeol` puts CRLF after headers but base64 lines still end in bare LF;
//!   [`openssl_sign_encrypt`] converts its output to CRLF throughout.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::x509::X509;

use super::TempDir;

/// Longest any single tool invocation may take before it is killed and the test fails.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A certificate, its private key and the root that issued it, all PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert_pem: Vec<u8>,
    /// PKCS#8 or traditional RSA, unencrypted.
    pub key_pem: Vec<u8>,
    /// The issuing root; a bundle of several certificates is accepted and all are trusted.
    pub ca_pem: Vec<u8>,
}

impl Identity {
    pub fn from_devpki(issued: &hisp::devpki::Issued, root: &hisp::devpki::Ca) -> Identity {
        Identity {
            cert_pem: issued.cert_pem(),
            key_pem: issued.key_pem(),
            ca_pem: root.cert.to_pem().expect("PEM-encoding the root"),
        }
    }

    /// Upper-case hex serial without leading zeros, as [`CmsInfo::recipient_serials`] has it.
    pub fn serial_hex(&self) -> String {
        serial_hex(&self.cert_pem)
    }
}

/// Content encryption for [`openssl_encrypt`] / [`openssl_sign_encrypt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    Aes128Cbc,
    Aes192Cbc,
    Aes256Cbc,
    /// openssl writes AuthEnvelopedData for GCM.
    Aes128Gcm,
    Aes256Gcm,
    /// Legacy; for tests that expect a refusal.
    Des3Cbc,
}

impl Cipher {
    pub fn openssl_flag(self) -> &'static str {
        match self {
            Cipher::Aes128Cbc => "-aes-128-cbc",
            Cipher::Aes192Cbc => "-aes-192-cbc",
            Cipher::Aes256Cbc => "-aes-256-cbc",
            Cipher::Aes128Gcm => "-aes-128-gcm",
            Cipher::Aes256Gcm => "-aes-256-gcm",
            Cipher::Des3Cbc => "-des3",
        }
    }

    /// The name `openssl cms -print` uses, as in [`CmsInfo::content_cipher`].
    pub fn openssl_name(self) -> &'static str {
        match self {
            Cipher::Des3Cbc => "des-ede3-cbc",
            other => &other.openssl_flag()[1..],
        }
    }
}

/// RSA key transport for [`openssl_encrypt`] / [`openssl_sign_encrypt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTransport {
    Pkcs1v15,
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256.
    OaepSha256,
    /// RSA-OAEP with the RFC 3560 defaults (SHA-1, MGF1-SHA-1).
    OaepSha1,
}

impl KeyTransport {
    fn keyopts(self) -> &'static [&'static str] {
        match self {
            KeyTransport::Pkcs1v15 => &[],
            KeyTransport::OaepSha256 => &[
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha256",
            ],
            KeyTransport::OaepSha1 => &["-keyopt", "rsa_padding_mode:oaep"],
        }
    }

    /// The name `openssl cms -print` uses, as in [`CmsInfo::key_transport`].
    pub fn openssl_name(self) -> &'static str {
        match self {
            KeyTransport::Pkcs1v15 => "rsaEncryption",
            KeyTransport::OaepSha256 | KeyTransport::OaepSha1 => "rsaesOaep",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running tools

/// What a finished tool invocation left behind.
#[derive(Debug)]
pub struct ToolOutput {
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{what} (exit {:?})\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout_text(),
            self.stderr
        )
    }
}

fn install_hint(program: &str) -> &'static str {
    match program {
        "gpgsm" | "gpgconf" | "gpg-agent" => "GnuPG's gpgsm (Debian/Ubuntu: apt-get install gpgsm)",
        "cmsutil" | "certutil" | "pk12util" => {
            "NSS tools (Debian/Ubuntu: apt-get install libnss3-tools)"
        }
        "openssl" => "the OpenSSL CLI (Debian/Ubuntu: apt-get install openssl)",
        _ => "it",
    }
}

/// Runs `cmd` with `stdin` as input, bounded by [`TOOL_TIMEOUT`]. Output goes to files, not
/// pipes: gpgsm starts a daemon that could inherit a pipe and keep it open forever.
fn run(mut cmd: Command, stdin: &[u8]) -> ToolOutput {
    try_run(&mut cmd, stdin).unwrap_or_else(|e| panic!("{e}"))
}

fn try_run(cmd: &mut Command, stdin: &[u8]) -> Result<ToolOutput, String> {
    use std::os::unix::process::CommandExt;

    let program = cmd.get_program().to_string_lossy().into_owned();
    let io = TempDir::new("io");
    let (inp, out, err) = (io.0.join("in"), io.0.join("out"), io.0.join("err"));
    fs::write(&inp, stdin).map_err(|e| format!("writing stdin for {program}: {e}"))?;
    let open = |p: &Path| File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let create = |p: &Path| File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    cmd.stdin(Stdio::from(open(&inp)?))
        .stdout(Stdio::from(create(&out)?))
        .stderr(Stdio::from(create(&err)?))
        // Its own process group, so a timeout also kills helpers it forked (not daemons that
        // called setsid; the GnuPG home's drop handles those).
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed or not on PATH; install {}. The interop tests never \
             skip a missing tool.",
            install_hint(&program)
        ),
        Err(e) => return Err(format!("cannot start {program}: {e}")),
    };
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let group = format!("-{}", child.id());
                let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                let _ = child.kill();
                let _ = child.wait();
                let stderr = fs::read(&err).unwrap_or_default();
                return Err(format!(
                    "{program} {:?} did not finish within {TOOL_TIMEOUT:?} and was killed; \
                     stderr so far:\n{}",
                    cmd.get_args().collect::<Vec<_>>(),
                    String::from_utf8_lossy(&stderr)
                ));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    Ok(ToolOutput {
        code: status.code(),
        stdout: fs::read(&out).map_err(|e| format!("reading stdout of {program}: {e}"))?,
        stderr: String::from_utf8_lossy(
            &fs::read(&err).map_err(|e| format!("reading stderr of {program}: {e}"))?,
        )
        .into_owned(),
    })
}

/// Arguments from fixed whitespace-free `flags` plus `(option, value)` pairs whose values are
/// paths or may be empty.
fn argv<'a>(flags: &'a str, pairs: &[(&'a str, &'a str)]) -> Vec<&'a str> {
    let mut v: Vec<&str> = flags.split_whitespace().collect();
    for (option, value) in pairs {
        v.extend([*option, *value]);
    }
    v
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Runs the tool and insists on exit 0; for steps that set up, not steps under test.
fn must(cmd: Command, stdin: &[u8], what: &str) -> ToolOutput {
    let out = run(cmd, stdin);
    assert!(out.success(), "{}", out.describe(what));
    out
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.0.join(name);
    fs::write(&p, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn certs(pem: &[u8]) -> Vec<X509> {
    let certs = X509::stack_from_pem(pem).expect("parsing PEM certificates");
    assert!(!certs.is_empty(), "no certificate in PEM input");
    certs
}

fn sha1_hex(cert: &X509) -> String {
    let d = cert
        .digest(MessageDigest::sha1())
        .expect("SHA-1 of a certificate");
    d.iter().fold(String::new(), |mut acc, b| {
        let _ = write!(acc, "{b:02X}");
        acc
    })
}

fn serial_hex(cert_pem: &[u8]) -> String {
    let bn = certs(cert_pem)[0].serial_number().to_bn().expect("serial");
    normalise_serial(&format!("0x{}", bn.to_hex_str().expect("hex serial")))
}

/// `openssl cms -print` writes serials in decimal while they fit its integer printer and as
/// `0x…` hex beyond; both become upper-case hex without leading zeros.
fn normalise_serial(s: &str) -> String {
    let s = s.trim();
    let hex = match s.strip_prefix("0x") {
        Some(h) => h.to_ascii_uppercase(),
        None => openssl::bn::BigNum::from_dec_str(s)
            .and_then(|bn| bn.to_hex_str().map(|h| h.to_string()))
            .unwrap_or_else(|e| panic!("serial {s:?}: {e}")),
    };
    let t = hex.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

// ---------------------------------------------------------------------------------------------
// openssl CLI

/// `openssl cms -decrypt` of an S/MIME message (application/pkcs7-mime, Enveloped- or
/// AuthEnvelopedData); returns the decrypted MIME entity byte for byte.
pub fn openssl_decrypt(id: &Identity, smime_message: &[u8]) -> Vec<u8> {
    openssl_try_decrypt(id, smime_message, "SMIME").unwrap_or_else(|e| panic!("{e}"))
}

/// Raw CMS variant of [`openssl_decrypt`] (DER or BER input); errors carry openssl's stderr.
pub fn openssl_decrypt_der(id: &Identity, cms: &[u8]) -> Result<Vec<u8>, String> {
    openssl_try_decrypt(id, cms, "DER")
}

fn openssl_try_decrypt(id: &Identity, input: &[u8], inform: &str) -> Result<Vec<u8>, String> {
    let dir = TempDir::new("ossl-dec");
    let cert = write(&dir, "c.pem", &id.cert_pem);
    let key = write(&dir, "k.pem", &id.key_pem);
    let (inp, out) = (write(&dir, "in", input), dir.0.join("out"));
    let args = argv(
        "cms -decrypt -binary",
        &[
            ("-inform", inform),
            ("-in", s(&inp)),
            ("-recip", s(&cert)),
            ("-inkey", s(&key)),
            ("-out", s(&out)),
        ],
    );
    let o = run(command("openssl", &args), b"");
    if !o.success() {
        return Err(o.describe("openssl cms -decrypt failed"));
    }
    Ok(fs::read(out).expect("decrypted output"))
}

/// `openssl cms -verify` of an S/MIME multipart/signed entity against exactly `ca_pem`;
/// returns the signed content (the first part, CRLF line ends).
pub fn openssl_verify(ca_pem: &[u8], signed_mime_entity: &[u8]) -> Vec<u8> {
    openssl_try_verify(ca_pem, signed_mime_entity).unwrap_or_else(|e| panic!("{e}"))
}

/// [`openssl_verify`] that reports a rejection instead of panicking.
pub fn openssl_try_verify(ca_pem: &[u8], signed_mime_entity: &[u8]) -> Result<Vec<u8>, String> {
    let dir = TempDir::new("ossl-ver");
    let ca = write(&dir, "ca.pem", ca_pem);
    let (inp, out) = (write(&dir, "in", signed_mime_entity), dir.0.join("out"));
    // No -binary: see the module notes. Without -no-CApath/-no-CAstore, -CAfile only adds to
    // the system store, and an "untrusted CA" test could pass by accident.
    let args = argv(
        "cms -verify -no-CApath -no-CAstore",
        &[("-in", s(&inp)), ("-CAfile", s(&ca)), ("-out", s(&out))],
    );
    let o = run(command("openssl", &args), b"");
    if !o.success() {
        return Err(o.describe("openssl cms -verify rejected the message"));
    }
    Ok(fs::read(out).expect("verified content"))
}

/// `openssl cms -verify` of a raw detached signature over `content` (bytes taken as is).
pub fn openssl_verify_detached(
    ca_pem: &[u8],
    signature: &[u8],
    content: &[u8],
) -> Result<(), String> {
    let dir = TempDir::new("ossl-verd");
    let ca = write(&dir, "ca.pem", ca_pem);
    let (sig, data) = (write(&dir, "sig", signature), write(&dir, "data", content));
    let args = argv(
        "cms -verify -binary -inform DER -out /dev/null -no-CApath -no-CAstore",
        &[
            ("-in", s(&sig)),
            ("-content", s(&data)),
            ("-CAfile", s(&ca)),
        ],
    );
    let o = run(command("openssl", &args), b"");
    if o.success() {
        Ok(())
    } else {
        Err(o.describe("openssl rejected the detached signature"))
    }
}

/// Detached SignedData (DER) over `content`: SHA-256, signed attributes, signer certificate
/// included — `openssl cms -sign -binary -md sha256 -outform DER` without `-nodetach`.
pub fn openssl_sign_detached(signer: &Identity, content: &[u8]) -> Vec<u8> {
    let dir = TempDir::new("ossl-sign");
    let cert = write(&dir, "c.pem", &signer.cert_pem);
    let key = write(&dir, "k.pem", &signer.key_pem);
    let (inp, out) = (write(&dir, "in", content), dir.0.join("sig"));
    let args = argv(
        "cms -sign -binary -md sha256 -outform DER",
        &[
            ("-signer", s(&cert)),
            ("-inkey", s(&key)),
            ("-in", s(&inp)),
            ("-out", s(&out)),
        ],
    );
    must(command("openssl", &args), b"", "openssl cms -sign");
    fs::read(out).expect("signature")
}

/// EnvelopedData (AuthEnvelopedData for GCM), DER, to every certificate in `recipients`.
pub fn openssl_encrypt(
    recipients: &[&[u8]],
    content: &[u8],
    cipher: Cipher,
    key_transport: KeyTransport,
) -> Vec<u8> {
    openssl_encrypt_to(recipients, content, cipher, key_transport, "DER")
}

fn openssl_encrypt_to(
    recipients: &[&[u8]],
    content: &[u8],
    cipher: Cipher,
    key_transport: KeyTransport,
    outform: &str,
) -> Vec<u8> {
    assert!(!recipients.is_empty(), "no recipients");
    let dir = TempDir::new("ossl-enc");
    let (inp, out) = (write(&dir, "in", content), dir.0.join("out"));
    let certs: Vec<PathBuf> = (recipients.iter().enumerate())
        .map(|(i, pem)| write(&dir, &format!("r{i}.pem"), pem))
        .collect();
    let mut args = argv(
        "cms -encrypt -binary",
        &[("-in", s(&inp)), ("-outform", outform), ("-out", s(&out))],
    );
    args.push(cipher.openssl_flag());
    if outform == "SMIME" {
        args.push("-crlfeol");
    }
    // -keyopt applies to the -recip before it, so every recipient gets its own.
    for cert in &certs {
        args.extend(["-recip", s(cert)]);
        args.extend(key_transport.keyopts());
    }
    must(command("openssl", &args), b"", "openssl cms -encrypt");
    fs::read(out).expect("encrypted output")
}

/// A complete Direct-style S/MIME entity made by openssl alone: `signed_entity` (normally
/// [`direct_wrap`] of an RFC 5322 message, CRLF line ends) is signed into
/// `multipart/signed; protocol="application/pkcs7-signature"; micalg="sha-256"` (detached
/// SHA-256), and that whole entity is encrypted to `recipients` (certificate PEMs) as
/// `application/pkcs7-mime; smime-type=enveloped-data`, base64. The result starts with
/// `MIME-Version:`; put the outer RFC 5322 headers in front of it (see [`prepend_headers`]).
pub fn openssl_sign_encrypt(
    signer: &Identity,
    recipients: &[&[u8]],
    signed_entity: &[u8],
    cipher: Cipher,
    key_transport: KeyTransport,
) -> Vec<u8> {
    assert_crlf(signed_entity, "the entity to sign");
    let signed = openssl_sign_mime(signer, signed_entity);
    let out = openssl_encrypt_to(recipients, &signed, cipher, key_transport, "SMIME");
    to_crlf(&out)
}

/// `openssl cms -sign` with S/MIME output: a detached multipart/signed entity, CRLF throughout.
pub fn openssl_sign_mime(signer: &Identity, signed_entity: &[u8]) -> Vec<u8> {
    assert_crlf(signed_entity, "the entity to sign");
    let dir = TempDir::new("ossl-smime");
    let cert = write(&dir, "c.pem", &signer.cert_pem);
    let key = write(&dir, "k.pem", &signer.key_pem);
    let (inp, out) = (write(&dir, "in", signed_entity), dir.0.join("out"));
    // -binary: the entity is already canonical, and must be signed byte for byte.
    let args = argv(
        "cms -sign -binary -crlfeol -md sha256",
        &[
            ("-signer", s(&cert)),
            ("-inkey", s(&key)),
            ("-in", s(&inp)),
            ("-out", s(&out)),
        ],
    );
    must(command("openssl", &args), b"", "openssl cms -sign (S/MIME)");
    to_crlf(&fs::read(out).expect("signed entity"))
}

/// What `openssl cms -cmsout -print` (and asn1parse) says about a CMS structure.
#[derive(Clone, Debug, Default)]
pub struct CmsInfo {
    /// e.g. `pkcs7-envelopedData`, `id-smime-ct-authEnvelopedData`, `pkcs7-signedData`.
    pub content_type: String,
    /// e.g. `aes-128-cbc`, `aes-256-gcm`.
    pub content_cipher: Option<String>,
    /// Per RecipientInfo in encoded order: `rsaEncryption` (PKCS#1 v1.5) or `rsaesOaep`.
    pub key_transport: Vec<String>,
    /// Per RecipientInfo in encoded order, normalised like [`Identity::serial_hex`].
    pub recipient_serials: Vec<String>,
    /// Per SignerInfo, e.g. `sha256`.
    pub digests: Vec<String>,
    /// Per SignerInfo, e.g. `rsaEncryption`, `rsassaPss`.
    pub signature_algorithms: Vec<String>,
    /// Signed attribute names over all signers, e.g. `messageDigest`, `signingTime`.
    pub signed_attributes: Vec<String>,
    /// Some(true) when SignedData carries no eContent.
    pub detached: Option<bool>,
    pub certificates: usize,
    /// The tool wrote BER with indefinite lengths somewhere (DER never has them).
    pub indefinite_length: bool,
    /// The full `-print` output, for messages.
    pub dump: String,
}

impl CmsInfo {
    pub fn has_signed_attribute(&self, name: &str) -> bool {
        self.signed_attributes.iter().any(|a| a == name)
    }
}

/// Parses the structure of a CMS blob with the openssl CLI (independent of hisp's parser).
pub fn cms_info(cms: &[u8]) -> CmsInfo {
    let dir = TempDir::new("ossl-print");
    let inp = write(&dir, "in", cms);
    let print = must(
        command(
            "openssl",
            &["cms", "-cmsout", "-print", "-inform", "DER", "-in", s(&inp)],
        ),
        b"",
        "openssl cms -cmsout -print",
    );
    let parse = must(
        command("openssl", &["asn1parse", "-inform", "DER", "-in", s(&inp)]),
        b"",
        "openssl asn1parse",
    );
    let mut info = parse_cms_print(&print.stdout_text());
    info.indefinite_length = parse.stdout_text().contains("l=inf");
    info
}

fn parse_cms_print(dump: &str) -> CmsInfo {
    // `name (1.2.3)` → `name`
    fn name(v: &str) -> String {
        v.split(" (").next().unwrap_or(v).trim().to_string()
    }
    let mut info = CmsInfo {
        dump: dump.to_string(),
        ..CmsInfo::default()
    };
    let (mut label, mut in_recipients, mut in_signed_attrs) = (String::new(), false, false);
    for line in dump.lines() {
        let t = line.trim();
        // Embedded asn1parse dumps of algorithm parameters and hex dumps of values.
        let hex_offset = |h: &str| h.len() >= 4 && h.chars().all(|c| c.is_ascii_hexdigit());
        if t.contains(":d=") || t.split_once(" - ").is_some_and(|(h, _)| hex_offset(h)) {
            continue;
        }
        let (key, value) = match t.split_once(':') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (t, ""),
        };
        match key {
            "contentType" if info.content_type.is_empty() => info.content_type = name(value),
            "recipientInfos" => in_recipients = true,
            "encryptedContentInfo" | "authEncryptedContentInfo" => in_recipients = false,
            "serialNumber" if in_recipients && label == "d.issuerAndSerialNumber" => {
                info.recipient_serials.push(normalise_serial(value))
            }
            "algorithm" => match label.as_str() {
                "keyEncryptionAlgorithm" => info.key_transport.push(name(value)),
                "contentEncryptionAlgorithm" => info.content_cipher = Some(name(value)),
                "digestAlgorithm" => info.digests.push(name(value)),
                "signatureAlgorithm" => info.signature_algorithms.push(name(value)),
                _ => {}
            },
            "eContent" => info.detached = Some(value == "<ABSENT>"),
            "d.certificate" => info.certificates += 1,
            "signedAttrs" => in_signed_attrs = true,
            "signatureAlgorithm" | "unsignedAttrs" => in_signed_attrs = false,
            "object" if in_signed_attrs => info.signed_attributes.push(name(value)),
            _ => {}
        }
        // An `algorithm:` line belongs to the bare `label:` line right above it; a recipient's
        // serial comes after its issuer, two lines below `d.issuerAndSerialNumber:`.
        if key != "issuer" && key != "serialNumber" {
            label = if value.is_empty() {
                key.to_string()
            } else {
                String::new()
            };
        }
    }
    info
}

// ---------------------------------------------------------------------------------------------
// gpgsm

/// A throw-away GnuPG home whose agent is killed on drop.
struct GpgHome {
    dir: TempDir,
    home: PathBuf,
}

impl GpgHome {
    fn new() -> GpgHome {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("gpgsm");
        let home = dir.0.join("g");
        fs::create_dir(&home).expect("creating GNUPGHOME");
        // GnuPG warns about (and some versions refuse) homes other users can read.
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).expect("chmod GNUPGHOME");
        // Loopback lets gpgsm answer passphrase questions from its (empty) stdin; the bogus
        // pinentry turns any question that still reaches the agent into an error, not a hang.
        fs::write(
            home.join("gpg-agent.conf"),
            "allow-loopback-pinentry\npinentry-program /bin/false\n",
        )
        .expect("writing gpg-agent.conf");
        GpgHome { dir, home }
    }

    /// gpgsm with status lines on stdout (so data must go to `--output`) and no way to block
    /// on a human or the network.
    fn gpgsm(&self, args: &[&str]) -> ToolOutput {
        let mut c = Command::new("gpgsm");
        let base =
            "--batch --disable-dirmngr --status-fd 1 --pinentry-mode loopback --passphrase-fd 0";
        c.env("GNUPGHOME", &self.home)
            .args(base.split(' '))
            .args(args);
        run(c, b"")
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        write(&self.dir, name, bytes)
    }

    /// Marks every certificate in `ca_pem` trusted for S/MIME in the agent's trustlist (the
    /// only non-interactive way 2.2 has) and imports it. Call once, before anything else: the
    /// agent reads the trustlist when first asked and then caches it.
    fn trust(&self, ca_pem: &[u8]) -> Result<(), String> {
        let cas = certs(ca_pem);
        let list = cas.iter().fold(String::new(), |mut acc, cert| {
            let _ = writeln!(acc, "{} S", sha1_hex(cert));
            acc
        });
        fs::write(self.home.join("trustlist.txt"), list).expect("writing trustlist.txt");
        for (i, cert) in cas.iter().enumerate() {
            self.import_cert(&cert.to_pem().expect("PEM"), &format!("ca{i}.pem"))?;
        }
        Ok(())
    }

    fn import_cert(&self, pem: &[u8], name: &str) -> Result<(), String> {
        let path = self.file(name, pem);
        let o = self.gpgsm(&["--import", s(&path)]);
        if o.success() && o.stdout_text().contains("IMPORT_OK") {
            Ok(())
        } else {
            Err(o.describe("gpgsm --import of a certificate failed"))
        }
    }

    /// Imports a PKCS#12 and checks the agent now holds a secret key.
    fn import_p12(&self, p12: &[u8]) -> Result<(), String> {
        let path = self.file("id.p12", p12);
        let o = self.gpgsm(&["--import", s(&path)]);
        if !o.success() {
            return Err(o.describe("gpgsm --import of the PKCS#12 failed"));
        }
        let list = self.gpgsm(&["--list-secret-keys", "--with-colons"]);
        if list.stdout_text().lines().any(|l| l.starts_with("crs:")) {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                o.describe("gpgsm imported the PKCS#12 but holds no secret key"),
                list.describe("gpgsm --list-secret-keys")
            ))
        }
    }

    /// Retries with fresh exports: gpgsm 2.2.40 rejects about one valid PBE-SHA1-3DES
    /// PKCS#12 in forty, always the same files (the failure follows the random salts; openssl
    /// reads those files fine, and a re-export of the same key imports).
    fn import_identity(&self, id: &Identity) -> Result<(), String> {
        const ATTEMPTS: usize = 5;
        self.trust(&id.ca_pem)?;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self.import_p12(&legacy_p12(id)) {
                Ok(()) => return Ok(()),
                Err(e) if e.contains(GPGSM_P12_REJECTED) => {
                    eprintln!("note: gpgsm rejected a valid PKCS#12; retrying with new salts");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(format!(
            "gpgsm rejected {ATTEMPTS} fresh PKCS#12 exports of one key; the last:\n{last}"
        ))
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        // The agent daemonised out of our process group; only gpgconf can stop it. Errors are
        // ignored: panicking in drop while a test already fails would abort the whole run.
        for args in [&["--kill", "all"][..], &["--remove-socketdir"]] {
            let mut c = Command::new("gpgconf");
            c.env("GNUPGHOME", &self.home).args(args);
            let _ = try_run(&mut c, b"");
        }
    }
}

/// How gpgsm ends any PKCS#12 import it could not read.
pub const GPGSM_P12_REJECTED: &str = "error parsing or decrypting the PKCS#12 file";

/// PKCS#12 with an empty password in the 3DES/SHA-1 form gpgsm 2.2 can read (see the module
/// notes); the root is included as the chain.
fn legacy_p12(id: &Identity) -> Vec<u8> {
    let dir = TempDir::new("p12");
    let cert = write(&dir, "c.pem", &id.cert_pem);
    let key = write(&dir, "k.pem", &id.key_pem);
    let ca = write(&dir, "ca.pem", &id.ca_pem);
    let out = dir.0.join("id.p12");
    let flags = "pkcs12 -export -passout pass: -name hisp-identity \
                 -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1";
    let args = argv(
        flags,
        &[
            ("-in", s(&cert)),
            ("-inkey", s(&key)),
            ("-certfile", s(&ca)),
            ("-out", s(&out)),
        ],
    );
    must(command("openssl", &args), b"", "openssl pkcs12 -export");
    fs::read(out).expect("PKCS#12")
}

/// Status lines (`[GNUPG:] KEYWORD args`) gpgsm printed on stdout, as (keyword, rest).
fn status_lines(out: &ToolOutput) -> Vec<(String, String)> {
    out.stdout_text()
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] "))
        .map(|l| match l.split_once(' ') {
            Some((k, rest)) => (k.to_string(), rest.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn has_status(out: &ToolOutput, keyword: &str) -> bool {
    status_lines(out).iter().any(|(k, _)| k == keyword)
}

/// Tries importing a PKCS#12 (empty stdin as its password) into a fresh gpgsm home; for
/// pinning down which PKCS#12 flavours gpgsm reads.
pub fn gpgsm_import_p12(p12: &[u8]) -> Result<(), String> {
    GpgHome::new().import_p12(p12)
}

/// One gpgsm decryption with everything it said, for tests of its quirks.
#[derive(Debug)]
pub struct GpgsmDecryption {
    pub output: ToolOutput,
    /// Present only when gpgsm reported `DECRYPTION_OKAY`.
    pub content: Option<Vec<u8>>,
}

/// `gpgsm --decrypt` in a fresh home holding `id`'s key; see [`gpgsm_decrypt`].
pub fn gpgsm_decrypt_run(id: &Identity, enveloped: &[u8]) -> GpgsmDecryption {
    let home = GpgHome::new();
    if let Err(e) = home.import_identity(id) {
        panic!("setting up gpgsm: {e}");
    }
    let inp = home.file("in.p7m", enveloped);
    let out = home.dir.0.join("out");
    let o = home.gpgsm(&["--output", s(&out), "--decrypt", s(&inp)]);
    let ok = has_status(&o, "DECRYPTION_OKAY") && !has_status(&o, "DECRYPTION_FAILED");
    let content = ok.then(|| fs::read(&out).expect("gpgsm output file"));
    GpgsmDecryption { output: o, content }
}

/// Decrypts EnvelopedData with gpgsm. Success is gpgsm's `DECRYPTION_OKAY` status, not its
/// exit code, which is 2 whenever our RecipientInfo is not the first (module notes, 5).
pub fn gpgsm_decrypt(id: &Identity, enveloped: &[u8]) -> Result<Vec<u8>, String> {
    let run = gpgsm_decrypt_run(id, enveloped);
    run.content
        .ok_or_else(|| run.output.describe("gpgsm could not decrypt"))
}

/// Verifies a detached signature with gpgsm, trusting exactly the certificates in `ca_pem`.
/// Every signature must be good, made by a certificate valid up to a trusted root, and there
/// must be at least one: gpgsm exits 0 for a SignedData without signers.
pub fn gpgsm_verify_detached(
    ca_pem: &[u8],
    signature: &[u8],
    content: &[u8],
) -> Result<(), String> {
    let home = GpgHome::new();
    home.trust(ca_pem)
        .unwrap_or_else(|e| panic!("setting up gpgsm: {e}"));
    let sig = home.file("sig.p7s", signature);
    let data = home.file("data", content);
    let o = home.gpgsm(&["--verify", s(&sig), s(&data)]);
    let status = status_lines(&o);
    let count = |k: &str| status.iter().filter(|(s, _)| s == k).count();
    let signatures = count("NEWSIG");
    let trusted = count("TRUST_FULLY") + count("TRUST_ULTIMATE");
    let bad = [
        "BADSIG",
        "ERRSIG",
        "EXPSIG",
        "EXPKEYSIG",
        "REVKEYSIG",
        "TRUST_UNDEFINED",
        "TRUST_NEVER",
        "TRUST_MARGINAL",
        "ERROR",
        "FAILURE",
    ];
    if o.success()
        && signatures > 0
        && count("GOODSIG") == signatures
        && count("VALIDSIG") == signatures
        && trusted == signatures
        && !bad.iter().any(|b| count(b) > 0)
    {
        Ok(())
    } else {
        Err(o.describe("gpgsm did not accept the signature"))
    }
}

/// Detached SignedData made by gpgsm with `--digest-algo SHA256` (BER as gpgsm writes it).
pub fn gpgsm_sign_detached(signer: &Identity, content: &[u8]) -> Result<Vec<u8>, String> {
    let home = GpgHome::new();
    home.import_identity(signer)?;
    let fpr = sha1_hex(&certs(&signer.cert_pem)[0]);
    let inp = home.file("in", content);
    let out = home.dir.0.join("sig");
    let args = argv(
        "--digest-algo SHA256",
        &[
            ("--local-user", &fpr),
            ("--output", s(&out)),
            ("--detach-sign", s(&inp)),
        ],
    );
    let o = home.gpgsm(&args);
    if o.success() && has_status(&o, "SIG_CREATED") {
        Ok(fs::read(out).expect("gpgsm signature"))
    } else {
        Err(o.describe("gpgsm could not sign"))
    }
}

/// EnvelopedData made by gpgsm for `recipients` (certificate PEMs issued under `ca_pem`,
/// which gpgsm insists on trusting). `cipher_algo` is passed to `--cipher-algo`; None keeps
/// gpgsm's default (AES-128-CBC).
pub fn gpgsm_encrypt(
    recipients: &[&[u8]],
    ca_pem: &[u8],
    content: &[u8],
    cipher_algo: Option<&str>,
) -> Result<Vec<u8>, String> {
    assert!(!recipients.is_empty(), "no recipients");
    let home = GpgHome::new();
    home.trust(ca_pem)?;
    for (i, pem) in recipients.iter().enumerate() {
        home.import_cert(pem, &format!("r{i}.pem"))?;
    }
    // By fingerprint: Direct domain-bound certificates carry no e-mail address.
    let fingerprints: Vec<String> = (recipients.iter())
        .map(|pem| sha1_hex(&certs(pem)[0]))
        .collect();
    let mut args: Vec<&str> = (fingerprints.iter())
        .flat_map(|f| ["--recipient", f.as_str()])
        .collect();
    if let Some(c) = cipher_algo {
        args.extend(["--cipher-algo", c]);
    }
    let inp = home.file("in", content);
    let out = home.dir.0.join("out");
    args.extend(["--output", s(&out), "--encrypt", s(&inp)]);
    let o = home.gpgsm(&args);
    if o.success() && !has_status(&o, "INV_RECP") {
        Ok(fs::read(out).expect("gpgsm output"))
    } else {
        Err(o.describe("gpgsm could not encrypt"))
    }
}

// ---------------------------------------------------------------------------------------------
// NSS cmsutil

const NSS_NICK: &str = "hisp-identity";

/// A throw-away NSS database with an empty password.
struct NssDb {
    dir: TempDir,
    db: String,
}

impl NssDb {
    fn new() -> NssDb {
        let dir = TempDir::new("nss");
        let path = dir.0.join("db");
        fs::create_dir(&path).expect("creating NSS db dir");
        let db = format!("sql:{}", s(&path));
        must(
            command("certutil", &["-N", "--empty-password", "-d", &db]),
            b"",
            "certutil -N",
        );
        NssDb { dir, db }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        write(&self.dir, name, bytes)
    }

    fn tool(&self, program: &str, args: &[&str]) -> ToolOutput {
        let mut c = Command::new(program);
        c.args(args).args(["-d", &self.db]);
        run(c, b"")
    }

    /// Adds every certificate in `ca_pem` as a trusted CA ("C" for SSL, e-mail and code).
    fn trust_cas(&self, ca_pem: &[u8]) {
        for (i, cert) in certs(ca_pem).iter().enumerate() {
            let nick = format!("hisp-ca-{i}");
            let path = self.file(&format!("{nick}.pem"), &cert.to_pem().expect("PEM"));
            let o = self.tool(
                "certutil",
                &["-A", "-n", &nick, "-t", "C,C,C", "-i", s(&path)],
            );
            assert!(o.success(), "{}", o.describe("certutil -A (CA)"));
        }
    }

    fn add_cert(&self, nick: &str, pem: &[u8]) {
        let path = self.file(&format!("{nick}.pem"), pem);
        let o = self.tool("certutil", &["-A", "-n", nick, "-t", ",,", "-i", s(&path)]);
        assert!(o.success(), "{}", o.describe("certutil -A (recipient)"));
    }

    /// Trusts the root first, then imports the key under the fixed nickname [`NSS_NICK`]
    /// (the PKCS#12 friendlyName; without one NSS would invent "<CN> - <O>").
    fn import_identity(&self, id: &Identity) -> Result<(), String> {
        self.trust_cas(&id.ca_pem);
        let dir = TempDir::new("nss-p12");
        let cert = write(&dir, "c.pem", &id.cert_pem);
        let key = write(&dir, "k.pem", &id.key_pem);
        let out = dir.0.join("id.p12");
        // OpenSSL 3's default PKCS#12 on purpose: unlike gpgsm, pk12util reads it.
        let args = argv(
            "pkcs12 -export -passout pass:",
            &[
                ("-in", s(&cert)),
                ("-inkey", s(&key)),
                ("-name", NSS_NICK),
                ("-out", s(&out)),
            ],
        );
        must(command("openssl", &args), b"", "openssl pkcs12 -export");
        let o = self.tool("pk12util", &["-i", s(&out), "-W", ""]);
        if o.success() {
            Ok(())
        } else {
            Err(o.describe("pk12util -i failed"))
        }
    }
}

/// `cmsutil -D` on `cms` in a fresh database that trusts `ca_pem`, with optional detached
/// `content` and extra arguments; raw, for tests pinning down cmsutil's own behaviour.
pub fn cmsutil_decode_raw(
    ca_pem: &[u8],
    cms: &[u8],
    content: Option<&[u8]>,
    extra_args: &[&str],
) -> ToolOutput {
    let db = NssDb::new();
    db.trust_cas(ca_pem);
    let inp = db.file("in", cms);
    let data = content.map(|c| db.file("data", c));
    let mut args = vec!["-D", "-i", s(&inp)];
    if let Some(data) = &data {
        args.extend(["-c", s(data)]);
    }
    args.extend(extra_args);
    db.tool("cmsutil", &args)
}

/// The `type=` of the outermost layer and, for SignedData, each signer's status, from the
/// report `cmsutil -D -h 1` prints.
fn cmsutil_report(report: &str) -> (Option<String>, Option<usize>, Vec<String>) {
    let field = |text: &str, key: &str| -> Option<String> {
        let start = text.find(key)? + key.len();
        let rest = &text[start..];
        Some(
            rest[..rest.find(';').unwrap_or(rest.len())]
                .trim()
                .to_string(),
        )
    };
    let kind = field(report, "type=");
    let signers = field(report, "nsigners=").and_then(|n| n.parse().ok());
    let statuses = (0..signers.unwrap_or(0))
        .map(|i| field(report, &format!("signer{i}.status=")).unwrap_or_default())
        .collect();
    (kind, signers, statuses)
}

/// Decrypts EnvelopedData with cmsutil; the input must really be enveloped (cmsutil -D would
/// otherwise happily "decrypt" a SignedData by returning its content).
pub fn cmsutil_decrypt(id: &Identity, enveloped: &[u8]) -> Result<Vec<u8>, String> {
    let db = NssDb::new();
    db.import_identity(id)?;
    let inp = db.file("in", enveloped);
    let out = db.dir.0.join("out");
    let o = db.tool("cmsutil", &["-D", "-p", "", "-i", s(&inp), "-o", s(&out)]);
    if !o.success() || o.stderr.contains("problem") {
        return Err(o.describe("cmsutil could not decrypt"));
    }
    let report = db.tool("cmsutil", &["-D", "-p", "", "-n", "-h", "1", "-i", s(&inp)]);
    let (kind, _, _) = cmsutil_report(&report.stdout_text());
    if !kind.as_deref().is_some_and(|k| k.ends_with("nvelopedData")) {
        return Err(report.describe("cmsutil decoded something that is not enveloped"));
    }
    Ok(fs::read(out).expect("cmsutil output"))
}

/// Verifies a detached signature with cmsutil, trusting exactly `ca_pem`. Three independent
/// conditions, because cmsutil's exit code alone lets several failures through (module notes):
/// exit 0 without complaints; the `-h` report shows SignedData with at least one signer, all
/// `GoodSignature`; and the content cmsutil hands back is the detached content we gave it.
pub fn cmsutil_verify_detached(
    ca_pem: &[u8],
    signature: &[u8],
    content: &[u8],
) -> Result<(), String> {
    let db = NssDb::new();
    db.trust_cas(ca_pem);
    let sig = db.file("sig", signature);
    let data = db.file("data", content);
    let out = db.dir.0.join("out");
    let plain = db.tool(
        "cmsutil",
        &["-D", "-i", s(&sig), "-c", s(&data), "-o", s(&out)],
    );
    if !plain.success() || !plain.stderr.trim().is_empty() {
        return Err(plain.describe("cmsutil rejected the signature"));
    }
    let report = db.tool(
        "cmsutil",
        &["-D", "-n", "-h", "1", "-i", s(&sig), "-c", s(&data)],
    );
    let text = report.stdout_text();
    let (kind, signers, statuses) = cmsutil_report(&text);
    if kind.as_deref() != Some("signedData")
        || signers.unwrap_or(0) == 0
        || statuses.iter().any(|st| st != "GoodSignature")
    {
        return Err(report.describe("cmsutil's report is not all GoodSignature"));
    }
    if fs::read(&out).expect("cmsutil output") != content {
        return Err(
            "cmsutil verified some content other than the detached content given (the \
             signature is not detached)"
                .into(),
        );
    }
    Ok(())
}

/// Detached SignedData made by cmsutil: `-S -T -H SHA256 -G -P` (signing time and S/MIME
/// capabilities, as mail clients send), BER as NSS writes it.
pub fn cmsutil_sign_detached(signer: &Identity, content: &[u8]) -> Result<Vec<u8>, String> {
    cmsutil_sign_detached_with(signer, content, &["-G", "-P"])
}

/// Like [`cmsutil_sign_detached`] with other attribute options, e.g. `["-Y", "NONE"]` for a
/// signature without any signed attributes.
pub fn cmsutil_sign_detached_with(
    signer: &Identity,
    content: &[u8],
    attribute_args: &[&str],
) -> Result<Vec<u8>, String> {
    let db = NssDb::new();
    db.import_identity(signer)?;
    let inp = db.file("in", content);
    let out = db.dir.0.join("sig");
    let mut args = vec!["-S", "-T", "-H", "SHA256", "-N", NSS_NICK, "-p", ""];
    args.extend(attribute_args);
    args.extend(["-i", s(&inp), "-o", s(&out)]);
    let o = db.tool("cmsutil", &args);
    if o.success() && o.stderr.trim().is_empty() {
        Ok(fs::read(out).expect("cmsutil signature"))
    } else {
        Err(o.describe("cmsutil could not sign"))
    }
}

/// EnvelopedData made by cmsutil for `recipients` (certificate PEMs), addressed by nickname.
/// NSS picks the cipher itself (module notes) and needs no trust in the recipients' CA.
pub fn cmsutil_encrypt(recipients: &[&[u8]], content: &[u8]) -> Result<Vec<u8>, String> {
    assert!(!recipients.is_empty(), "no recipients");
    let db = NssDb::new();
    let nicks: Vec<String> = (0..recipients.len())
        .map(|i| format!("recipient-{i}"))
        .collect();
    for (nick, pem) in nicks.iter().zip(recipients) {
        db.add_cert(nick, pem);
    }
    let inp = db.file("in", content);
    let out = db.dir.0.join("out");
    let list = nicks.join(",");
    let o = db.tool(
        "cmsutil",
        &["-E", "-r", &list, "-i", s(&inp), "-o", s(&out)],
    );
    if o.success() && o.stderr.trim().is_empty() {
        Ok(fs::read(out).expect("cmsutil output"))
    } else {
        Err(o.describe("cmsutil could not encrypt"))
    }
}

// ---------------------------------------------------------------------------------------------
// MIME, done by hand so no tool's MIME code is in the loop

/// The Direct wrap: `Content-Type: message/rfc822`, a blank line, the whole original message.
pub fn direct_wrap(message: &[u8]) -> Vec<u8> {
    assert_crlf(message, "the message to wrap");
    let mut v = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
    v.extend_from_slice(message);
    v
}

/// `headers` (already formatted `Name: value` lines, CRLF-terminated) in front of an entity.
pub fn prepend_headers(headers: &str, entity: &[u8]) -> Vec<u8> {
    assert!(
        headers.is_empty() || headers.ends_with("\r\n"),
        "headers must end in CRLF"
    );
    let mut v = headers.as_bytes().to_vec();
    v.extend_from_slice(entity);
    v
}

fn base64_lines(der: &[u8]) -> String {
    let b64 = openssl::base64::encode_block(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 38);
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

fn base64_decode(text: &[u8]) -> Result<Vec<u8>, String> {
    let compact: String = String::from_utf8_lossy(text)
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    openssl::base64::decode_block(&compact).map_err(|e| format!("bad base64: {e}"))
}

/// A Direct multipart/signed entity around `content_entity` (signed as is) and a detached
/// signature made by any tool.
pub fn multipart_signed(content_entity: &[u8], signature: &[u8]) -> Vec<u8> {
    assert_crlf(content_entity, "the signed entity");
    let boundary = format!("hisp-interop-{}", std::process::id());
    assert!(
        !content_entity
            .windows(boundary.len())
            .any(|w| w == boundary.as_bytes()),
        "boundary occurs in the content"
    );
    let mut v = format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n"
    )
    .into_bytes();
    v.extend_from_slice(content_entity);
    v.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7s\r\n\r\n{}--{boundary}--\r\n",
            base64_lines(signature)
        )
        .as_bytes(),
    );
    v
}

/// An `application/pkcs7-mime; smime-type=enveloped-data` entity around raw CMS.
pub fn pkcs7_mime(enveloped: &[u8]) -> Vec<u8> {
    let mut v = b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m\r\n\r\n".to_vec();
    v.extend_from_slice(base64_lines(enveloped).as_bytes());
    v
}

/// Unfolded header fields, names lower-cased, in order.
type Headers = Vec<(String, String)>;

/// Splits an entity into unfolded headers (name lower-cased) and its body.
fn split_entity(entity: &[u8]) -> Result<(Headers, &[u8]), String> {
    let (head, body) = if let Some(i) = find(entity, b"\r\n\r\n") {
        (&entity[..i], &entity[i + 4..])
    } else if let Some(i) = find(entity, b"\n\n") {
        (&entity[..i], &entity[i + 2..])
    } else {
        return Err("no blank line after the headers".into());
    };
    let mut headers: Headers = Vec::new();
    for line in String::from_utf8_lossy(head).split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            let last = headers
                .last_mut()
                .ok_or("continuation line before any header")?;
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        } else if !line.is_empty() {
            return Err(format!("not a header line: {line:?}"));
        }
    }
    Ok((headers, body))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A Content-Type parameter, quoted or not.
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The raw CMS inside an application/pkcs7-mime (or x-pkcs7-mime) message or entity.
pub fn pkcs7_mime_der(message: &[u8]) -> Result<Vec<u8>, String> {
    let (headers, body) = split_entity(message)?;
    let ct = header(&headers, "content-type").ok_or("no Content-Type")?;
    let kind = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if kind != "application/pkcs7-mime" && kind != "application/x-pkcs7-mime" {
        return Err(format!("not pkcs7-mime: {ct}"));
    }
    match header(&headers, "content-transfer-encoding") {
        Some(cte) if cte.eq_ignore_ascii_case("base64") => base64_decode(body),
        other => Err(format!("unexpected Content-Transfer-Encoding {other:?}")),
    }
}

/// The two halves of a multipart/signed entity: the exact signed bytes of the first part and
/// the decoded detached signature from the second.
pub fn split_multipart_signed(entity: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let (headers, body) = split_entity(entity)?;
    let ct = header(&headers, "content-type").ok_or("no Content-Type")?;
    if !ct.to_ascii_lowercase().starts_with("multipart/signed") {
        return Err(format!("not multipart/signed: {ct}"));
    }
    let boundary = param(ct, "boundary").ok_or("no boundary")?;
    let dash = format!("--{boundary}");
    // The first delimiter may open the body or follow the preamble on its own line.
    let first = if body.starts_with(dash.as_bytes()) {
        0
    } else {
        find(body, format!("\n{dash}").as_bytes()).ok_or("no first boundary")? + 1
    };
    let after = &body[first + dash.len()..];
    let start = if after.starts_with(b"\r\n") { 2 } else { 1 };
    let part1_and_rest = &after[start..];
    let next = find(part1_and_rest, format!("\n{dash}").as_bytes()).ok_or("no second boundary")?;
    // The line break before a delimiter belongs to the delimiter, not to the signed part.
    let end = if next > 0 && part1_and_rest[next - 1] == b'\r' {
        next - 1
    } else {
        next
    };
    let signed = part1_and_rest[..end].to_vec();
    let rest = &part1_and_rest[next + 1 + dash.len()..];
    let rest = rest
        .strip_prefix(b"\r\n")
        .or_else(|| rest.strip_prefix(b"\n"))
        .ok_or("bad delimiter line")?;
    let close = find(rest, format!("\n{dash}--").as_bytes()).ok_or("no closing boundary")?;
    let (sig_headers, sig_body) = split_entity(&rest[..close + 1])?;
    let sig_ct = header(&sig_headers, "content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if !sig_ct.contains("pkcs7-signature") {
        return Err(format!("second part is not a pkcs7-signature: {sig_ct}"));
    }
    Ok((signed, base64_decode(sig_body)?))
}

/// Turns every bare LF into CRLF (openssl's base64 bodies use LF even with -crlfeol).
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            v.push(b'\r');
        }
        v.push(b);
    }
    v
}

#[track_caller]
fn assert_crlf(bytes: &[u8], what: &str) {
    let bare = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
    assert!(
        !bare,
        "{what} has a bare LF; MIME entities to sign must be CRLF-canonical"
    );
}
