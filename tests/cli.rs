//! The admin CLI end to end: the real binary, a real SQLite file and a real PostgreSQL.

mod common;

use common::{Backend, Env, backends, tool};
use hisp::devpki::{Ca, Usage, rsa_key};
use serde_json::Value;

/// An anchor's (incoming, outgoing) flags from its JSON.
fn directions(anchor: &Value) -> (bool, bool) {
    let flag = |k: &str| {
        anchor[k]
            .as_bool()
            .unwrap_or_else(|| panic!("{k} missing: {anchor}"))
    };
    (flag("incoming"), flag("outgoing"))
}

fn sha_list(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("JSON array")
        .iter()
        .map(|c| c["sha256"].as_str().expect("sha256").to_string())
        .collect()
}

async fn round_trip(backend: Backend) {
    let env = Env::new(backend).await;
    let root = Ca::root("Round Trip Root").unwrap();
    let alice = root.leaf().email("alice@hisp-a.example").build().unwrap();
    let org = root.leaf().dns("hisp-a.example").build().unwrap();
    let signer = root
        .leaf()
        .email("bob@hisp-a.example")
        .usage(Usage::SignOnly)
        .build()
        .unwrap();

    env.run(&["domain", "add", "hisp-a.example"]).ok();
    env.run(&["domain", "add", "Partner.Example"]).ok();
    env.run_env(
        &[
            "address",
            "add",
            "alice@hisp-a.example",
            "--password-env",
            "PW",
        ],
        &[("PW", "s3cret")],
    )
    .ok();
    env.run(&["address", "add", "bob@hisp-a.example"]).ok();

    let domains = env.run(&["domain", "list", "--json"]).ok().json();
    let names: Vec<&str> = domains
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hisp-a.example", "partner.example"]);

    let addrs = env.run(&["--json", "address", "list"]).ok().json();
    assert_eq!(addrs.as_array().unwrap().len(), 2);
    assert_eq!(addrs[0]["address"], "alice@hisp-a.example");
    assert_eq!(addrs[0]["has_password"], true);
    assert_eq!(addrs[1]["has_password"], false);
    assert!(
        !addrs.to_string().contains("argon2"),
        "password hash leaked into output"
    );

    // PKCS#12 (address-bound), PEM pair (domain-bound), and a legacy RC2 .p12 made by the
    // openssl CLI rather than by us.
    let p12 = env.write(
        "alice.p12",
        &alice
            .to_p12("pw", std::slice::from_ref(&root.cert))
            .unwrap(),
    );
    env.import_p12(&p12, "pw").ok();
    let cert_pem = env.write("org.pem", &org.cert_pem());
    let key_pem = env.write("org.key", &org.key_pem());
    let out = env.import_pem(&cert_pem, &key_pem).ok();
    assert!(out.stdout.contains("domain-bound"), "{}", out.stdout);
    let sig_cert = env.write("bob.pem", &signer.cert_pem());
    let sig_key = env.write("bob.key", &signer.key_pem());
    let legacy = env.path("bob-legacy.p12");
    tool(
        "openssl",
        &[
            "pkcs12",
            "-export",
            "-legacy",
            "-in",
            sig_cert.to_str().unwrap(),
            "-inkey",
            sig_key.to_str().unwrap(),
            "-passout",
            "pass:old",
            "-out",
            legacy.to_str().unwrap(),
        ],
    );
    let shown = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-legacy",
            "-info",
            "-noout",
            "-in",
            legacy.to_str().unwrap(),
            "-passin",
            "pass:old",
        ])
        .output()
        .unwrap();
    assert!(shown.status.success());
    let info = format!(
        "{}{}",
        String::from_utf8_lossy(&shown.stdout),
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(
        info.contains("RC2"),
        "openssl did not make an RC2 p12: {info}"
    );
    let out = env.import_p12(&legacy, "old").ok();
    assert!(out.stdout.contains("sign only"), "{}", out.stdout);

    let certs = env.run(&["cert", "list", "--json"]).ok().json();
    let mut got = sha_list(&certs);
    got.sort();
    let mut want = vec![alice.sha256_hex(), org.sha256_hex(), signer.sha256_hex()];
    want.sort();
    assert_eq!(got, want);
    let by_subject: Vec<(&str, &str)> = certs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["subject"].as_str().unwrap(),
                c["binding"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(by_subject.contains(&("alice@hisp-a.example", "address")));
    assert!(by_subject.contains(&("hisp-a.example", "domain")));

    // Export: PEM and DER are the certificate we imported, byte for byte.
    let pem = env
        .run(&["cert", "export", "alice@hisp-a.example", "--format", "pem"])
        .ok();
    assert_eq!(pem.raw_stdout, alice.cert_pem());
    let der = env
        .run(&["cert", "export", "alice@hisp-a.example", "--format", "der"])
        .ok();
    assert_eq!(der.raw_stdout, alice.cert_der());
    let by_hash = env
        .run(&["cert", "export", &org.sha256_hex()[..12], "--format", "der"])
        .ok();
    assert_eq!(by_hash.raw_stdout, org.cert_der());
    env.run(&["cert", "export", "nobody@hisp-a.example"])
        .fails(3, "no local certificate");

    // Anchors: incoming-only, and neither flag = both; sha256 is of the DER.
    let root_pem = env.write("root.pem", &root.as_issued().cert_pem());
    let other = Ca::root("Partner Root").unwrap();
    let other_der = env.write("partner.der", &other.as_issued().cert_der());
    env.run(&[
        "anchor",
        "add",
        "--domain",
        "hisp-a.example",
        "--file",
        root_pem.to_str().unwrap(),
        "--incoming",
    ])
    .ok();
    env.run(&[
        "anchor",
        "add",
        "--domain",
        "partner.example",
        "--file",
        other_der.to_str().unwrap(),
    ])
    .ok();
    env.run(&[
        "anchor",
        "add",
        "--domain",
        "hisp-a.example",
        "--file",
        root_pem.to_str().unwrap(),
        "--incoming",
    ])
    .fails(1, "already present");
    let anchors = env.run(&["anchor", "list", "--json"]).ok().json();
    let list = anchors.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let a0 = list
        .iter()
        .find(|a| a["domain"] == "hisp-a.example")
        .unwrap();
    assert_eq!(a0["sha256"], root.as_issued().sha256_hex());
    assert_eq!(directions(a0), (true, false));
    let a1 = list
        .iter()
        .find(|a| a["domain"] == "partner.example")
        .unwrap();
    assert_eq!(a1["sha256"], other.as_issued().sha256_hex());
    assert_eq!(directions(a1), (true, true));
    let only = env
        .run(&["anchor", "list", "--domain", "partner.example", "--json"])
        .ok()
        .json();
    assert_eq!(sha_list(&only), [other.as_issued().sha256_hex()]);

    // Tokens are printed once and stored hashed.
    let token = env
        .run(&["token", "create", "--address", "alice@hisp-a.example"])
        .ok();
    let secret = token.stdout.trim().to_string();
    assert!(secret.starts_with("hisp_"));
    let tokens = env.run(&["token", "list", "--json"]).ok().json();
    assert!(!tokens.to_string().contains(&secret));
    assert_eq!(tokens[0]["address"], "alice@hisp-a.example");
    {
        use sqlx::Row;
        let store = env.store().await;
        let stored: Vec<String> = sqlx::query("SELECT token_hash FROM api_tokens")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("token_hash").unwrap())
            .collect();
        assert_eq!(stored, [hisp::auth::token_hash(&secret)]);
        let alice = store
            .address("alice@hisp-a.example")
            .await
            .unwrap()
            .unwrap();
        let hash = alice.password_hash.expect("password stored");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(hisp::auth::verify_password("s3cret", &hash));
        assert!(!hisp::auth::verify_password("s3cre", &hash));
        store.close().await;
    }
    env.run(&["token", "create", "--admin", "--json"]).ok();

    // Removal, in an order that exercises the guards.
    env.run(&["domain", "remove", "hisp-a.example"])
        .fails(1, "--force");
    for a in list {
        env.run(&["anchor", "remove", &a["id"].to_string()]).ok();
    }
    env.run(&["anchor", "remove", "999999"])
        .fails(3, "no anchor");
    assert_eq!(
        env.run(&["anchor", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    env.run(&["cert", "remove", &org.sha256_hex()]).ok();
    env.run(&["address", "remove", "bob@hisp-a.example"]).ok();
    let certs = env.run(&["cert", "list", "--json"]).ok().json();
    assert_eq!(
        sha_list(&certs),
        [alice.sha256_hex()],
        "bob's key must go with bob"
    );
    env.run(&["domain", "remove", "hisp-a.example", "--force"])
        .ok();
    env.run(&["domain", "remove", "partner.example"]).ok();
    assert_eq!(
        env.run(&["domain", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    assert_eq!(
        env.run(&["cert", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );

    // Every change was audited, as a consistent chain.
    let store = env.store().await;
    assert!(store.audit_count().await.unwrap() >= 15);
    store.close().await;
}

#[tokio::test]
async fn round_trip_on_every_backend() {
    for b in backends() {
        round_trip(b).await;
    }
}

async fn bad_input(backend: Backend) {
    let env = Env::new(backend).await;
    env.run(&["domain", "add", "hisp-a.example"]).ok();
    env.run(&["address", "add", "alice@hisp-a.example"]).ok();
    let root = Ca::root("Bad Input Root").unwrap();
    let alice = root.leaf().email("alice@hisp-a.example").build().unwrap();
    let store = env.store().await;
    let audit_before = store.audit_count().await.unwrap();

    // Wrong PKCS#12 password.
    let p12 = env.write("alice.p12", &alice.to_p12("right", &[]).unwrap());
    env.import_p12(&p12, "wrong").fails(1, "wrong password");
    // Password variable not set at all: a usage error naming the flag.
    env.run(&[
        "cert",
        "import",
        "--p12",
        p12.to_str().unwrap(),
        "--password-env",
        "NOT_SET_ANYWHERE",
    ])
    .fails(2, "--password-env NOT_SET_ANYWHERE");
    // Garbage where a PKCS#12 should be.
    let junk = env.write("junk.p12", b"this is not DER at all");
    env.run(&["cert", "import", "--p12", junk.to_str().unwrap()])
        .fails(1, "not a readable PKCS#12");

    // Key that belongs to another certificate.
    let other_key = rsa_key(2048).unwrap();
    let cert = env.write("alice.pem", &alice.cert_pem());
    let wrong_key = env.write("other.key", &other_key.private_key_to_pem_pkcs8().unwrap());
    env.import_pem(&cert, &wrong_key)
        .fails(1, "does not match certificate");

    // 1024-bit RSA.
    let weak = root
        .leaf()
        .email("alice@hisp-a.example")
        .key_bits(1024)
        .build()
        .unwrap();
    let weak_cert = env.write("weak.pem", &weak.cert_pem());
    let weak_key = env.write("weak.key", &weak.key_pem());
    env.import_pem(&weak_cert, &weak_key)
        .fails(1, "1024-bit RSA key");

    // Certificate for a domain that isn't ours, and for a local domain's unknown address.
    let foreign = root
        .leaf()
        .email("mallory@elsewhere.example")
        .build()
        .unwrap();
    let fp = env.write("foreign.p12", &foreign.to_p12("x", &[]).unwrap());
    env.import_p12(&fp, "x")
        .fails(3, "not local; add the domain first");
    let stranger = root.leaf().email("carol@hisp-a.example").build().unwrap();
    let sp = env.write("carol.p12", &stranger.to_p12("x", &[]).unwrap());
    env.import_p12(&sp, "x")
        .fails(3, "hisp address add carol@hisp-a.example");

    // Malformed PEM: truncated certificate, and a key file with no key in it.
    let pem = alice.cert_pem();
    let truncated = env.write("trunc.pem", &pem[..pem.len() / 2]);
    let good_key = env.write("alice.key", &alice.key_pem());
    env.import_pem(&truncated, &good_key).fails(1, "trunc.pem");
    let nokey = env.write(
        "nokey.pem",
        b"-----BEGIN NONSENSE-----\nAAAA\n-----END NONSENSE-----\n",
    );
    env.import_pem(&cert, &nokey)
        .fails(1, "no PRIVATE KEY block");
    let garbage_anchor = env.write("garbage.der", &[0x30, 0x82, 0x01]);
    env.run(&[
        "anchor",
        "add",
        "--domain",
        "hisp-a.example",
        "--file",
        garbage_anchor.to_str().unwrap(),
    ])
    .fails(1, "not a valid certificate");
    // Missing file: a usage error.
    env.run(&["cert", "import", "--p12", "/nonexistent/x.p12"])
        .fails(2, "cannot read /nonexistent/x.p12");
    // Bad address and domain syntax.
    env.run(&["address", "add", "not-an-address"])
        .fails(2, "not an address");
    env.run(&["domain", "add", "under_score.example"])
        .fails(2, "not a valid domain name");

    // Nothing was written by any of the failures.
    assert_eq!(
        env.run(&["cert", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    assert_eq!(
        env.run(&["anchor", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    assert_eq!(store.audit_count().await.unwrap(), audit_before);
    store.close().await;

    // Unknown config key: exit 2, one line naming the key; the store isn't even opened.
    let bad = env.write("bad.toml", b"[smtp]\nmax_mesage_size = \"1MiB\"\n");
    let out = common::Run::from_output(
        env.bare_command(&["--config", bad.to_str().unwrap(), "domain", "list"])
            .output()
            .unwrap(),
    );
    out.fails(2, "config key `smtp.max_mesage_size`: unknown key");
    let bad = env.write("bad2.toml", b"[delivery]\ngive_up_after = \"3 days\"\n");
    common::Run::from_output(
        env.bare_command(&["--config", bad.to_str().unwrap(), "config", "check"])
            .output()
            .unwrap(),
    )
    .fails(2, "config key `delivery.give_up_after`: invalid duration");
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    for b in backends() {
        bad_input(b).await;
    }
}

#[tokio::test]
async fn private_keys_never_stored_in_clear() {
    let env = Env::new(Backend::Sqlite).await;
    env.run(&["domain", "add", "hisp-a.example"]).ok();
    env.run(&["address", "add", "alice@hisp-a.example"]).ok();
    let root = Ca::root("At Rest Root").unwrap();
    let alice = root.leaf().email("alice@hisp-a.example").build().unwrap();
    let p12 = env.write("alice.p12", &alice.to_p12("pw", &[]).unwrap());
    env.import_p12(&p12, "pw").ok();

    let rsa = alice.key.rsa().unwrap();
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("PKCS#8 DER", alice.key.private_key_to_pkcs8().unwrap()),
        ("PKCS#1 DER", rsa.private_key_to_der().unwrap()),
        ("PEM", alice.key_pem()),
        ("prime p", rsa.p().unwrap().to_vec()),
        ("prime q", rsa.q().unwrap().to_vec()),
        ("private exponent", rsa.d().to_vec()),
    ];
    let db = env.path("hisp.db");
    let mut haystack = std::fs::read(&db).unwrap();
    for suffix in ["-wal", "-shm"] {
        if let Ok(extra) = std::fs::read(format!("{}{suffix}", db.display())) {
            haystack.extend(extra);
        }
    }
    // The certificate itself must be there (so the search is meaningful)...
    assert!(
        contains(&haystack, &alice.cert_der()),
        "certificate not found in the SQLite file"
    );
    // ...and no piece of the private key may be.
    for (what, needle) in needles {
        let probe = &needle[..needle.len().min(64)];
        assert!(
            !contains(&haystack, probe),
            "{what} of the private key is in the database file in clear"
        );
    }

    // The sealed key opens only with the right master key, and a wrong one is refused up front.
    let wrong = "00".repeat(32);
    env.run_env(&["cert", "list"], &[("HISP_MASTER_KEY", wrong.as_str())])
        .fails(2, "not the key this store's private keys were sealed with");
    let store = env.store().await;
    let rows = store.list_local_certs().await.unwrap();
    let master = hisp::keys::MasterKey::from_bytes(
        hex32(common::MASTER_KEY_HEX),
        hisp::keys::KeySource::Env,
    );
    let key = hisp::keys::open_private_key(&master, &rows[0].key_sealed, &rows[0].sha256).unwrap();
    assert!(key.public_eq(&alice.key));
    let other = hisp::keys::MasterKey::from_bytes([9; 32], hisp::keys::KeySource::Env);
    assert!(hisp::keys::open_private_key(&other, &rows[0].key_sealed, &rows[0].sha256).is_err());
    store.close().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex32(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test]
async fn master_key_is_created_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(Backend::Sqlite).await;
    let first = common::Run::from_output(
        env.command(&["domain", "add", "hisp-a.example"])
            .env_remove("HISP_MASTER_KEY")
            .output()
            .unwrap(),
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("created a new master key"),
        "{}",
        first.stderr
    );
    let key_file = env.path("data/master.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let second = common::Run::from_output(
        env.command(&["domain", "list"])
            .env_remove("HISP_MASTER_KEY")
            .output()
            .unwrap(),
    );
    assert_eq!(second.code, 0);
    assert!(
        !second.stderr.contains("created"),
        "said twice: {}",
        second.stderr
    );
    // Losing the key file must not silently mint a new one for an existing store.
    std::fs::remove_file(&key_file).unwrap();
    let third = common::Run::from_output(
        env.command(&["domain", "list"])
            .env_remove("HISP_MASTER_KEY")
            .output()
            .unwrap(),
    );
    third.fails(2, "does not exist; restore the original key");
    assert!(!key_file.exists());
}

#[tokio::test]
async fn sqlite_store_is_wal_private_and_enforces_foreign_keys() {
    use sqlx::{Connection, Row};
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(Backend::Sqlite).await;
    // Point the database into a directory that doesn't exist yet.
    std::fs::write(
        &env.config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n",
            env.path("db/store.db").display()
        ),
    )
    .unwrap();
    env.run(&["domain", "add", "hisp-a.example"]).ok();
    let file = env.path("db/store.db");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(env.path("db"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // journal_mode=WAL is a property of the file: a plain connection that sets nothing must
    // see what hisp's own connections set.
    let url = format!("sqlite://{}", file.display());
    let mut plain = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut plain)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    plain.close().await.unwrap();
    // Foreign keys are per connection: check them on the store's own pool.
    let store = hisp::store::Store::open(&url, 1).await.unwrap();
    let err = sqlx::query(
        "INSERT INTO addresses (domain_id, address, created_at) VALUES (999, 'x@y.example', 0)",
    )
    .execute(store.pool())
    .await;
    assert!(err.is_err(), "foreign key not enforced");
    store.close().await;
}

#[tokio::test]
async fn master_key_sources_and_precedence() {
    let env = Env::new(Backend::Sqlite).await;
    let key_file = env.path("master.key");
    std::fs::write(&key_file, format!("{}\n", common::MASTER_KEY_HEX)).unwrap();
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "{config}[keys]\nmaster_key_file = \"{}\"\n",
            key_file.display()
        ),
    )
    .unwrap();
    let no_env = |args: &[&str]| {
        common::Run::from_output(
            env.command(args)
                .env_remove("HISP_MASTER_KEY")
                .output()
                .unwrap(),
        )
    };
    // The configured file is used (no key is generated under data_dir); a world-readable
    // key file gets a warning.
    let run = no_env(&["domain", "add", "hisp-a.example"]).ok();
    assert!(
        run.stderr.contains("readable by other users"),
        "{}",
        run.stderr
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = no_env(&["domain", "list"]).ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert!(!env.path("data/master.key").exists());
    // The environment variable wins over the file: same key in another encoding works...
    let b64 = openssl::base64::encode_block(&hex32(common::MASTER_KEY_HEX));
    env.run_env(&["domain", "list"], &[("HISP_MASTER_KEY", b64.as_str())])
        .ok();
    // ...and a different one is refused even though the file is right.
    env.run_env(
        &["domain", "list"],
        &[("HISP_MASTER_KEY", &"11".repeat(32))],
    )
    .fails(2, "HISP_MASTER_KEY");
    // Malformed keys: exit 2 naming the source.
    env.run_env(&["domain", "list"], &[("HISP_MASTER_KEY", "short")])
        .fails(2, "master key from HISP_MASTER_KEY is not usable");
    std::fs::write(&key_file, "not a key\n").unwrap();
    no_env(&["domain", "list"]).fails(2, "is not usable");
    std::fs::remove_file(&key_file).unwrap();
    no_env(&["domain", "list"]).fails(2, "cannot read master key file");
}

#[tokio::test]
async fn more_key_formats_and_refusals() {
    let env = Env::new(Backend::Sqlite).await;
    env.run(&["domain", "add", "hisp-a.example"]).ok();
    env.run(&["address", "add", "alice@hisp-a.example"]).ok();
    let root = Ca::root("Formats Root").unwrap();
    let alice = root.leaf().email("alice@hisp-a.example").build().unwrap();
    let cert = env.write("alice.pem", &alice.cert_pem());

    // Encrypted PKCS#8 PEM key: needs --password-env, refuses the wrong one.
    let enc = alice
        .key
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"kpw")
        .unwrap();
    let enc_key = env.write("alice-enc.key", &enc);
    env.import_pem(&cert, &enc_key).fails(
        1,
        "the key is encrypted; give its password with --password-env",
    );
    let (c, k) = (cert.to_str().unwrap(), enc_key.to_str().unwrap());
    let args = [
        "cert",
        "import",
        "--cert",
        c,
        "--key",
        k,
        "--password-env",
        "KPW",
    ];
    env.run_env(&args, &[("KPW", "nope")])
        .fails(1, "wrong password?");

    // A PKCS#12 without a MAC, opened with the wrong password, is still a password error.
    let key_pem = env.write("alice.key", &alice.key_pem());
    let nomac = env.path("nomac.p12");
    tool(
        "openssl",
        &[
            "pkcs12",
            "-export",
            "-nomac",
            "-in",
            c,
            "-inkey",
            key_pem.to_str().unwrap(),
            "-passout",
            "pass:right",
            "-out",
            nomac.to_str().unwrap(),
        ],
    );
    env.import_p12(&nomac, "wrong").fails(1, "wrong password");

    // An EC key: Direct uses RSA only.
    let ec_key = env.path("ec.key");
    let ec_cert = env.path("ec.pem");
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            ec_key.to_str().unwrap(),
            "-out",
            ec_cert.to_str().unwrap(),
            "-days",
            "30",
            "-subj",
            "/CN=ec",
            "-addext",
            "subjectAltName=email:alice@hisp-a.example",
        ],
    );
    env.import_pem(&ec_cert, &ec_key)
        .fails(1, "Direct uses RSA keys only");

    // The right password works, and nothing above was stored.
    env.run_env(&args, &[("KPW", "kpw")]).ok();
    let certs = env.run(&["cert", "list", "--json"]).ok().json();
    assert_eq!(sha_list(&certs), [alice.sha256_hex()]);

    // Usage errors from argument parsing: exit 2, one line naming the problem.
    env.run(&["cert", "import"]).fails(2, "--p12");
    env.run(&["cert", "export", "x", "--format", "jpeg"])
        .fails(2, "invalid value 'jpeg' for '--format");
    env.run(&["domain", "frobnicate"])
        .fails(2, "unrecognized subcommand");
}

#[tokio::test]
async fn anchors_widen_and_multi_cert_files_are_atomic() {
    for backend in backends() {
        let env = Env::new(backend).await;
        env.run(&["domain", "add", "hisp-a.example"]).ok();
        let one = Ca::root("Anchor One").unwrap().as_issued();
        let two = Ca::root("Anchor Two").unwrap().as_issued();
        let one_pem = env.write("one.pem", &one.cert_pem());
        let both_pem = env.write("both.pem", &[two.cert_pem(), one.cert_pem()].concat());
        let add = |file: &std::path::Path, flags: &[&str]| {
            let mut args = vec!["anchor", "add", "--domain", "hisp-a.example", "--file"];
            args.push(file.to_str().unwrap());
            args.extend_from_slice(flags);
            env.run(&args)
        };
        add(&one_pem, &["--incoming"]).ok();
        // A file whose second certificate is already fully present adds nothing at all.
        add(&both_pem, &["--incoming"]).fails(1, "already present");
        let list = env.run(&["anchor", "list", "--json"]).ok().json();
        assert_eq!(sha_list(&list), [one.sha256_hex()], "{backend:?}");
        // Asking for the other direction widens the existing anchor instead of failing.
        let out = add(&both_pem, &["--outgoing"]).ok();
        assert!(out.stdout.contains("widened anchor"), "{}", out.stdout);
        let list = env.run(&["anchor", "list", "--json"]).ok().json();
        let by_sha = |sha: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|a| a["sha256"] == sha)
                .cloned()
                .unwrap()
        };
        let a1 = by_sha(&one.sha256_hex());
        assert_eq!(directions(&a1), (true, true));
        let a2 = by_sha(&two.sha256_hex());
        assert_eq!(directions(&a2), (false, true));
    }
}

#[test]
fn config_precedence_and_defaults() {
    let dir = common::TempDir::new("cfg");
    let hisp = env!("CARGO_BIN_EXE_hisp");
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut c = std::process::Command::new(hisp);
        c.args(args)
            .current_dir(dir.path())
            .env_remove("HISP_CONFIG");
        for (k, v) in envs {
            c.env(k, v);
        }
        common::Run::from_output(c.output().unwrap())
    };
    // No file anywhere: built-in defaults.
    let out = run(&["config", "check", "--json"], &[]).ok().json();
    assert_eq!(out["source"], "built-in defaults");
    assert_eq!(out["database"], "sqlite://data/hisp.db");
    // config/hisp.toml in the working directory is picked up.
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/hisp.toml"),
        "[database]\nurl = \"sqlite://local.db\"\n",
    )
    .unwrap();
    let out = run(&["config", "check", "--json"], &[]).ok().json();
    assert_eq!(out["database"], "sqlite://local.db");
    // HISP_CONFIG beats it, and --config beats HISP_CONFIG.
    std::fs::write(
        dir.path().join("env.toml"),
        "[database]\nurl = \"sqlite://env.db\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("flag.toml"),
        "[database]\nurl = \"sqlite://flag.db\"\n",
    )
    .unwrap();
    let out = run(
        &["config", "check", "--json"],
        &[("HISP_CONFIG", "env.toml")],
    )
    .ok()
    .json();
    assert_eq!(out["database"], "sqlite://env.db");
    let out = run(
        &["--config", "flag.toml", "config", "check", "--json"],
        &[("HISP_CONFIG", "env.toml")],
    )
    .ok()
    .json();
    assert_eq!(out["database"], "sqlite://flag.db");
    // A named file that doesn't exist is an error, not a silent fallback.
    run(&["--config", "missing.toml", "config", "check"], &[]).fails(2, "missing.toml");
    // The shipped example is valid as it stands.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hisp.toml");
    run(&["--config", example, "config", "check"], &[]).ok();
    // A database password never appears in output.
    std::fs::write(
        dir.path().join("pw.toml"),
        "[database]\nurl = \"postgres://u:hunter2@127.0.0.1:1/db\"\n",
    )
    .unwrap();
    let out = run(&["--config", "pw.toml", "config", "check"], &[]).ok();
    assert!(!out.stdout.contains("hunter2"), "{}", out.stdout);
}

#[tokio::test]
async fn dev_pki_script_output_imports() {
    let env = Env::new(Backend::Sqlite).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/make-dev-pki.sh");
    let pki = env.path("pki");
    tool(
        script,
        &[pki.to_str().unwrap(), "dev.example", "doc@dev.example"],
    );
    env.run(&["domain", "add", "dev.example"]).ok();
    env.run(&["address", "add", "doc@dev.example"]).ok();
    for name in ["dev.example.p12", "doc@dev.example.p12"] {
        let p = pki.join(name);
        env.import_p12(&p, "dev").ok();
    }
    let ca = pki.join("ca.pem");
    env.run(&[
        "anchor",
        "add",
        "--domain",
        "dev.example",
        "--file",
        ca.to_str().unwrap(),
    ])
    .ok();
    let certs = env.run(&["cert", "list", "--json"]).ok().json();
    let subjects: Vec<&str> = certs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["dev.example", "doc@dev.example"]);
    assert!(
        certs
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["can_sign"] == true && c["can_encrypt"] == true)
    );
}

#[tokio::test]
async fn concurrent_first_start_on_a_fresh_store() {
    // Several commands starting together on a store that doesn't exist yet (the server and an
    // admin script, say) must all succeed: one schema, one master key.
    let env = Env::new(Backend::Sqlite).await;
    let children: Vec<_> = (0..6)
        .map(|_| {
            env.command(&["domain", "list", "--json"])
                .env_remove("HISP_MASTER_KEY")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut created = 0;
    for child in children {
        let run = common::Run::from_output(child.wait_with_output().unwrap());
        assert_eq!(run.code, 0, "{}", run.stderr);
        created += usize::from(run.stderr.contains("created a new master key"));
    }
    assert_eq!(created, 1, "exactly one process may create the key");
    common::Run::from_output(
        env.command(&["domain", "add", "hisp-a.example"])
            .env_remove("HISP_MASTER_KEY")
            .output()
            .unwrap(),
    )
    .ok();
}
