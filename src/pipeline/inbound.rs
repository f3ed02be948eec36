//! The decision at the heart of the inbound pipeline (SPEC A, D; INTERFACE "SMTP behaviour"):
//! may this message, arriving over SMTP with this envelope, go into our recipients'
//! mailboxes? Decrypt with a local key → verify the signature → trust the signer (the
//! recipient domain's incoming anchors, bound to the sender, not revoked) → envelope binding →
//! unwrap. Every refusal becomes an SMTP reply with an enhanced status code and a sentence
//! naming the cause.
//!
//! Pure apart from the trust fetcher (CRLs, AIA), which the caller supplies; the caller does
//! the storing, the MDNs and the reply, and runs this off the async reactor.

use openssl::x509::X509;

use crate::address::DirectAddress;
use crate::notify::mdn::{self, NotificationKind};
use crate::smime::mime::{self, header_value};
use crate::smime::{AlgorithmPolicy, Envelope, LocalKey, SmimeError, check_envelope, open};
use crate::trust::{BindTo, CrlCache, Fetcher, Policy, Purpose, Validator, Verdict};

/// What the inbound check needs besides the message.
pub struct Context<'a> {
    /// Private keys of the recipients' addresses and domains.
    pub keys: &'a [LocalKey],
    pub algorithms: &'a AlgorithmPolicy,
    /// Incoming anchors of the recipient domain.
    pub anchors: &'a [X509],
    pub trust: &'a Policy,
    pub fetcher: &'a dyn Fetcher,
    pub crl_cache: &'a CrlCache,
    /// Unix seconds.
    pub time: i64,
}

/// A message that passed every check.
#[derive(Debug)]
pub struct Accepted {
    /// The protected RFC 5322 message (unwrapped, CRLF).
    pub message: Vec<u8>,
    pub sender: DirectAddress,
    /// The signer certificate that was trusted.
    pub signer: X509,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// An MDN or DSN: feed it to tracking, never answer it with an MDN (E27).
    pub notification: Option<NotificationKind>,
    /// The sender asked for a `dispatched` MDN (E28).
    pub final_delivery_requested: bool,
}

/// A refusal, as the SMTP reply to DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reply: u16,
    /// RFC 3463 enhanced status code.
    pub status: &'static str,
    /// A stable short name for logs, metrics and the audit log.
    pub cause: &'static str,
    /// One sentence for the peer.
    pub text: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.reply, self.status, self.text)
    }
}

fn reject(status: &'static str, cause: &'static str, text: String) -> Rejection {
    Rejection {
        reply: 554,
        status,
        cause,
        text,
    }
}

/// The SMTP meaning of an S/MIME failure.
pub fn smime_rejection(e: &SmimeError) -> Rejection {
    let text = e.to_string();
    match e {
        SmimeError::NotSmime(_) | SmimeError::NotEncrypted(_) => reject(
            "5.7.1",
            "not-encrypted",
            format!("not encrypted: Direct requires S/MIME encryption ({text})"),
        ),
        SmimeError::CannotDecrypt(_) | SmimeError::DecryptFailed(_) => {
            reject("5.7.5", "cannot-decrypt", format!("cannot decrypt: {text}"))
        }
        SmimeError::Mime(_) | SmimeError::MalformedCms(_) => {
            reject("5.6.0", e.code(), format!("malformed message: {text}"))
        }
        SmimeError::WeakCipher(_)
        | SmimeError::UnknownCipher(_)
        | SmimeError::Md5
        | SmimeError::WeakDigest(_)
        | SmimeError::WeakKey { .. } => {
            reject("5.7.6", "weak-algorithm", format!("weak algorithm: {text}"))
        }
        SmimeError::NotSigned(_)
        | SmimeError::MicalgMismatch { .. }
        | SmimeError::BadSignature(_) => {
            reject("5.7.7", "bad-signature", format!("bad signature: {text}"))
        }
        SmimeError::Envelope(_) => reject(
            "5.7.1",
            "envelope-mismatch",
            format!("sender/recipient mismatch: {text}"),
        ),
        SmimeError::Build(_) => reject("5.3.0", "internal", text),
    }
}

fn trust_rejection(verdict: Verdict, reason: &str) -> Rejection {
    match verdict {
        Verdict::Revoked => reject(
            "5.7.1",
            "revoked",
            format!("signer certificate revoked: {reason}"),
        ),
        Verdict::WrongBinding => reject(
            "5.7.1",
            "signer-mismatch",
            format!("sender/signer mismatch: {reason}"),
        ),
        Verdict::WeakKey => reject(
            "5.7.6",
            "weak-algorithm",
            format!("weak algorithm: {reason}"),
        ),
        _ => reject(
            "5.7.1",
            "untrusted-signer",
            format!("untrusted signer ({verdict}): {reason}"),
        ),
    }
}

/// Runs every inbound check. `envelope` is the SMTP MAIL FROM and the RCPT TOs this message
/// is for.
pub fn check(
    message: &[u8],
    envelope: &Envelope,
    ctx: &Context<'_>,
) -> Result<Accepted, Rejection> {
    let opened = open(message, ctx.keys, ctx.algorithms).map_err(|e| smime_rejection(&e))?;
    let header = mime::split(&opened.message).header;
    let sender = sender_address(header).ok_or_else(|| {
        reject(
            "5.6.0",
            "no-sender",
            "the protected message has no usable From address".into(),
        )
    })?;
    let validator = Validator {
        anchors: ctx.anchors,
        policy: ctx.trust,
        fetcher: ctx.fetcher,
        crl_cache: ctx.crl_cache,
        time: ctx.time,
    };
    let bind = BindTo::Address(sender.clone());
    let mut first_refusal = None;
    let mut trusted = None;
    for signer in &opened.signers {
        let v = validator.validate(signer, &opened.certificates, Purpose::Signing, &bind);
        if v.is_valid() {
            trusted = Some(signer.clone());
            break;
        }
        first_refusal.get_or_insert((v.verdict, v.reason));
    }
    let signer = match (trusted, first_refusal) {
        (Some(s), _) => s,
        (None, Some((verdict, reason))) => return Err(trust_rejection(verdict, &reason)),
        (None, None) => {
            return Err(reject(
                "5.7.7",
                "bad-signature",
                "bad signature: no signer".into(),
            ));
        }
    };
    check_envelope(&opened.message, envelope)
        .map_err(|e| smime_rejection(&SmimeError::Envelope(e)))?;
    let header = mime::split(&opened.message).header;
    Ok(Accepted {
        message_id: header_value(header, "Message-ID"),
        subject: header_value(header, "Subject"),
        notification: mdn::notification_kind(header),
        final_delivery_requested: mdn::final_delivery_requested(header),
        sender,
        signer,
        message: opened.message,
    })
}

/// The first From address (Direct messages have one author).
fn sender_address(header: &[u8]) -> Option<DirectAddress> {
    let parsed = mail_parser::MessageParser::new().parse_headers(header)?;
    let from = parsed.from()?.first()?.address()?.to_string();
    DirectAddress::parse(&from).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContentCipher, KeyTransport};
    use crate::devpki::{Ca, Issued};
    use crate::smime::{SealOptions, seal};

    struct NoFetch;
    impl Fetcher for NoFetch {
        fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
            Err(format!("offline: {url}"))
        }
    }

    fn key(i: &Issued, chain: &[X509]) -> LocalKey {
        LocalKey {
            cert: i.cert.clone(),
            key: i.key.clone(),
            chain: chain.to_vec(),
        }
    }

    const MSG: &[u8] = b"From: Dr Smith <dr.smith@hisp-a.example>\r\nTo: dr.jones@hisp-b.example\r\nSubject: Referral\r\nMessage-ID: <r1@hisp-a.example>\r\nDisposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\nMIME-Version: 1.0\r\n\r\nPlease see the patient.\r\n";

    struct World {
        root: Ca,
        smith: Issued,
        jones: Issued,
    }

    fn world() -> World {
        let root = Ca::root("Inbound root").unwrap();
        let smith = root
            .leaf()
            .email("dr.smith@hisp-a.example")
            .build()
            .unwrap();
        let jones = root
            .leaf()
            .email("dr.jones@hisp-b.example")
            .build()
            .unwrap();
        World { root, smith, jones }
    }

    fn sealed(w: &World, signer: &Issued, msg: &[u8]) -> Vec<u8> {
        let options = SealOptions {
            cipher: ContentCipher::Aes256Cbc,
            key_transport: KeyTransport::RsaOaep,
        };
        seal(
            msg,
            &[key(signer, &[])],
            std::slice::from_ref(&w.jones.cert),
            &options,
        )
        .unwrap()
    }

    fn run(w: &World, message: &[u8], from: &str, anchors: &[X509]) -> Result<Accepted, Rejection> {
        let keys = [key(&w.jones, &[])];
        let crl = CrlCache::new();
        let ctx = Context {
            keys: &keys,
            algorithms: &AlgorithmPolicy::default(),
            anchors,
            trust: &Policy::default(),
            fetcher: &NoFetch,
            crl_cache: &crl,
            time: crate::clock::now_secs(),
        };
        let env = Envelope {
            mail_from: from.into(),
            rcpt_to: vec!["dr.jones@hisp-b.example".into()],
        };
        check(message, &env, &ctx)
    }

    #[test]
    fn accepts_a_trusted_direct_message() {
        let w = world();
        let a = run(
            &w,
            &sealed(&w, &w.smith, MSG),
            "dr.smith@hisp-a.example",
            std::slice::from_ref(&w.root.cert),
        )
        .unwrap();
        assert_eq!(a.sender.as_str(), "dr.smith@hisp-a.example");
        assert_eq!(a.message_id.as_deref(), Some("<r1@hisp-a.example>"));
        assert!(a.final_delivery_requested);
        assert_eq!(a.notification, None);
        assert_eq!(a.message, MSG);
    }

    #[test]
    fn refusals_name_their_cause() {
        let w = world();
        let good = sealed(&w, &w.smith, MSG);
        let cause = |r: Result<Accepted, Rejection>| r.unwrap_err();

        let r = cause(run(
            &w,
            MSG,
            "dr.smith@hisp-a.example",
            std::slice::from_ref(&w.root.cert),
        ));
        assert_eq!((r.status, r.cause), ("5.7.1", "not-encrypted"), "{r}");

        let stranger = Ca::root("Stranger").unwrap();
        let r = cause(run(
            &w,
            &good,
            "dr.smith@hisp-a.example",
            std::slice::from_ref(&stranger.cert),
        ));
        assert_eq!((r.status, r.cause), ("5.7.1", "untrusted-signer"), "{r}");
        assert!(r.text.starts_with("untrusted signer"), "{r}");

        let mallory = w
            .root
            .leaf()
            .email("mallory@hisp-a.example")
            .build()
            .unwrap();
        let r = cause(run(
            &w,
            &sealed(&w, &mallory, MSG),
            "dr.smith@hisp-a.example",
            std::slice::from_ref(&w.root.cert),
        ));
        assert_eq!((r.status, r.cause), ("5.7.1", "signer-mismatch"), "{r}");

        let r = cause(run(
            &w,
            &good,
            "mallory@hisp-a.example",
            std::slice::from_ref(&w.root.cert),
        ));
        assert_eq!((r.status, r.cause), ("5.7.1", "envelope-mismatch"), "{r}");

        let mut tampered = good.clone();
        let n = tampered.len();
        tampered[n / 2] ^= 0x01;
        let r = cause(run(
            &w,
            &tampered,
            "dr.smith@hisp-a.example",
            std::slice::from_ref(&w.root.cert),
        ));
        assert!(["5.7.5", "5.6.0"].contains(&r.status), "{r}");
        assert_eq!(r.reply, 554);
    }

    #[test]
    fn notifications_are_recognised() {
        let w = world();
        let mdn = crate::notify::mdn::build(&crate::notify::mdn::MdnSpec {
            reporting_host: "hisp-a.example",
            final_recipient: "dr.smith@hisp-a.example",
            original_sender: "dr.jones@hisp-b.example",
            original_message_id: "<x@hisp-b.example>",
            original_subject: None,
            disposition: crate::notify::mdn::Disposition::Processed,
            final_delivery_requested: false,
            message_id: "<m@hisp-a.example>",
            date: 0,
        });
        let a = run(
            &w,
            &sealed(&w, &w.smith, &mdn),
            "dr.smith@hisp-a.example",
            std::slice::from_ref(&w.root.cert),
        )
        .unwrap();
        assert_eq!(a.notification, Some(NotificationKind::Mdn));
    }
}
