//! EVP objects kept between messages. OpenSSL 3 looks an algorithm up in its provider store
//! (locks, name hashing) every time a context is initialised with a legacy `EVP_CIPHER`, and
//! setting up an RSA-OAEP context fetches its digests again: per message that was a
//! noticeable share of everything around the RSA operation itself.

use foreign_types::ForeignType;
use openssl::cipher::{Cipher, CipherRef};
use openssl::error::ErrorStack;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

const AES: [&str; 6] = [
    "AES-128-CBC",
    "AES-192-CBC",
    "AES-256-CBC",
    "AES-128-GCM",
    "AES-192-GCM",
    "AES-256-GCM",
];

/// An AES cipher by its OpenSSL name, fetched once.
pub fn aes(name: &str) -> Result<&'static CipherRef, ErrorStack> {
    static FETCHED: [OnceLock<Cipher>; 6] = [const { OnceLock::new() }; 6];
    let i = AES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .expect("an AES cipher name");
    if let Some(c) = FETCHED[i].get() {
        return Ok(c);
    }
    let c = Cipher::fetch(None, AES[i], None)?;
    Ok(FETCHED[i].get_or_init(|| c))
}

/// SHA-256, fetched once.
pub fn sha256() -> Result<&'static MdRef, ErrorStack> {
    static FETCHED: OnceLock<Md> = OnceLock::new();
    if let Some(md) = FETCHED.get() {
        return Ok(md);
    }
    let md = Md::fetch(None, "SHA2-256", None)?;
    Ok(FETCHED.get_or_init(|| md))
}

/// Recipients' public keys are few and recur; a context set up for one can encrypt any
/// number of content keys.
const TRANSPORT_CONTEXTS: usize = 256;

type Contexts = HashMap<(usize, bool), (PKey<Public>, PkeyCtx<Public>)>;

thread_local! {
    /// By key object address and padding; the entry holds a reference to the key, so the
    /// address can't be reused by another key while cached.
    static TRANSPORT: RefCell<Contexts> = RefCell::new(HashMap::new());
}

/// `cek` encrypted to `key` with RSA-OAEP (SHA-256, MGF1-SHA-256) or PKCS#1 v1.5.
pub fn wrap_key(key: &PKey<Public>, oaep: bool, cek: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    TRANSPORT.with(|cell| {
        let mut contexts = cell.borrow_mut();
        let id = (key.as_ptr() as usize, oaep);
        if !contexts.contains_key(&id) {
            if contexts.len() >= TRANSPORT_CONTEXTS {
                contexts.clear();
            }
            let mut ctx = PkeyCtx::new(key)?;
            ctx.encrypt_init()?;
            if oaep {
                ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
                ctx.set_rsa_oaep_md(Md::sha256())?;
                ctx.set_rsa_mgf1_md(Md::sha256())?;
            } else {
                ctx.set_rsa_padding(Padding::PKCS1)?;
            }
            contexts.insert(id, (key.clone(), ctx));
        }
        let (_, ctx) = contexts.get_mut(&id).expect("inserted above");
        let mut out = Vec::new();
        ctx.encrypt_to_vec(cek, &mut out)?;
        Ok(out)
    })
}
