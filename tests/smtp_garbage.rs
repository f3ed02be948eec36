//! Hostile input: random bytes mixed with command fragments, on both roles. The server must
//! keep answering with well-formed replies, never crash, and still serve the next client.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Backend;
use common::smtp::{Client, start, test_config};
use hisp::config::Size;
use hisp::pipeline::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const PIECES: &[&[u8]] = &[
    b"EHLO x\r\n",
    b"HELO \r\n",
    b"MAIL FROM:<",
    b"a@hisp-a.example>",
    b" SIZE=99999999999999999999",
    b" BODY=8BITMIME RET=FULL ENVID=+2B+",
    b"RCPT TO:<bob@hisp-a.example> NOTIFY=SUCCESS,NEVER ORCPT=rfc822;+00",
    b"DATA\r\n",
    b"\r\n.\r\n",
    b"..\r\n",
    b"AUTH PLAIN ",
    b"AUTH LOGIN\r\n",
    b"AGFsaWNlQGhpc3AtYS5leGFtcGxlAA==\r\n",
    b"*\r\n",
    b"=\r\n",
    b"STARTTLS\r\n",
    b"BDAT 4 LAST\r\n",
    b"RSET\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\xff\xfe",
    b"<>",
    b":",
];

fn garbage(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..(rng.next() % 60) {
        if rng.next().is_multiple_of(3) {
            for _ in 0..(rng.next() % 40) {
                out.push(rng.next() as u8);
            }
        } else {
            out.extend_from_slice(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
        }
    }
    out
}

/// Every reply line is `ddd` then space or dash, and ends in CRLF.
fn well_formed(output: &[u8]) -> bool {
    output.split_inclusive(|&b| b == b'\n').all(|line| {
        line.len() >= 6
            && line[..3].iter().all(u8::is_ascii_digit)
            && (line[3] == b' ' || line[3] == b'-')
            && line.ends_with(b"\r\n")
            && line[..line.len() - 2]
                .iter()
                .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t')
    })
}

async fn hammer(role: Role) {
    let mut config = test_config();
    config.require_tls_for_auth = false;
    config.max_message_size = Size(2000);
    config.command_timeout = hisp::config::Duration(Duration::from_millis(500));
    config.data_timeout = hisp::config::Duration(Duration::from_millis(500));
    config.max_auth_failures = 1000;
    let s = start(Backend::Sqlite, role, true, config).await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..150 {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let input = garbage(&mut rng);
        let _ = tcp.write_all(&input).await;
        let _ = tcp.shutdown().await;
        let mut output = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut output)).await;
        assert!(read.is_ok(), "the server hung on {input:?}");
        assert!(output.starts_with(b"220 "), "{output:?}");
        // A TLS handshake after an accepted STARTTLS is binary; check the plaintext part.
        let plain = match output
            .windows(23)
            .position(|w| w == b"220 2.0.0 ready to start")
        {
            Some(i) => &output[..i + output[i..].iter().position(|&b| b == b'\n').unwrap_or(0) + 1],
            None => &output[..],
        };
        assert!(
            well_formed(plain),
            "malformed reply to {input:?}: {:?}",
            String::from_utf8_lossy(plain)
        );
    }
    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO after.example", "250-").await;
    c.cmd("QUIT", "221").await;
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[tokio::test]
async fn random_input_on_both_roles() {
    // Sessions run in this process, in tasks whose panics tokio would swallow: count them.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));
    hammer(Role::Inbound).await;
    hammer(Role::Submission).await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a session panicked");
}
