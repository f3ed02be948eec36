//! DATA: read the dot-stuffed body to the final dot, enforce the size limit (reading on to
//! the end before refusing, so the session stays in step), and hand the message to the
//! pipeline. Nothing is stored unless the final dot arrived and the pipeline accepted.

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};

use super::conn::ReadError;
use super::session::{Flow, Session};
use crate::clock::{now_secs, rfc5322_date};
use crate::pipeline::{Pipeline, Received, Verdict};
use crate::smtp::reply::Reply;

/// Collects a DATA body from arbitrary chunks of input. Pure: bytes in, body out.
pub struct Body {
    receiver: DataReceiver,
    discard: Option<DummyDataReceiver>,
    pub bytes: Vec<u8>,
    max: usize,
}

impl Body {
    pub fn new(max: usize) -> Body {
        let mut receiver = DataReceiver::new();
        // The receiver recognises the terminator and stuffed dots only after a CRLF; the
        // body starts right after the DATA line's CRLF, so prime it with one.
        let mut scratch = Vec::new();
        receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
        Body {
            receiver,
            discard: None,
            bytes: Vec::new(),
            max,
        }
    }

    pub fn too_big(&self) -> bool {
        self.discard.is_some()
    }

    /// Takes what it can from `input`; returns (bytes consumed, end of data reached).
    pub fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut iter = input.iter();
        let done = match &mut self.discard {
            Some(d) => d.ingest(&mut iter),
            None => {
                let done = self.receiver.ingest(&mut iter, &mut self.bytes);
                if self.bytes.len() > self.max {
                    // Keep the stuffing state, drop the bytes, and only look for the end.
                    self.discard = Some(DummyDataReceiver::new_data(&self.receiver));
                    self.bytes = Vec::new();
                }
                done
            }
        };
        (input.len() - iter.as_slice().len(), done)
    }
}

/// The slowest DATA transfer accepted once `data_timeout` has passed, in bytes per second
/// (the default of Postfix's `smtpd_min_data_rate`). `data_timeout` alone applies per read,
/// as RFC 5321 4.5.3.2 words it, so a client trickling a byte every few seconds could hold
/// its connection and buffer forever; with this, DATA may take `data_timeout` plus one
/// second per 500 bytes received, which no real sender comes near (a 10 MB message may take
/// over five hours).
pub const MIN_DATA_RATE: u64 = 500;

/// How long the DATA phase may have taken by now, given the bytes received so far.
pub fn data_allowance(data_timeout: std::time::Duration, received: u64) -> std::time::Duration {
    data_timeout + std::time::Duration::from_millis(received.saturating_mul(1000) / MIN_DATA_RATE)
}

impl<P: Pipeline> Session<P> {
    pub async fn data(&mut self) -> Flow {
        let Some(tx) = self.tx.as_ref() else {
            return self.reply(Reply::new(503, "5.5.1", "send MAIL first"));
        };
        if tx.recipients.is_empty() {
            return self.reply(Reply::new(
                503,
                "5.5.1",
                "no valid recipients; send RCPT first",
            ));
        }
        self.reply(Reply::new(354, "", "end data with <CR><LF>.<CR><LF>"));
        let max = self.shared.config.max_message_size.bytes() as usize;
        let timeout = self.shared.config.data_timeout.std();
        let mut body = Body::new(max);
        let started = std::time::Instant::now();
        let mut received = 0u64;
        loop {
            let (used, done) = body.feed(&self.conn.input);
            self.conn.input.drain(..used);
            received += used as u64;
            if done {
                break;
            }
            let left = data_allowance(timeout, received).saturating_sub(started.elapsed());
            if left.is_zero() {
                return self.reply(Reply::new(
                    421,
                    "4.4.2",
                    format!(
                        "message data arrives too slowly (under {MIN_DATA_RATE} bytes/s); closing"
                    ),
                ));
            }
            match self.conn.fill(timeout.min(left)).await {
                Ok(()) => {}
                // Disconnected mid-DATA: drop the partial message, store nothing.
                Err(ReadError::Closed) => return Flow::Close,
                // The allowance ran out before the per-read timeout: answered above.
                Err(ReadError::TimedOut) if left < timeout => {}
                Err(ReadError::TimedOut) => {
                    return self.reply(Reply::new(
                        421,
                        "4.4.2",
                        "timeout waiting for message data; closing",
                    ));
                }
            }
        }
        self.conn.shrink();
        let Some(tx) = self.tx.take() else {
            return self.reply(Reply::new(503, "5.5.1", "send MAIL first"));
        };
        if body.too_big() {
            return self.reply(Reply::new(
                552,
                "5.3.4",
                format!("message too big: this server accepts at most {max} bytes"),
            ));
        }
        let helo = self.helo.clone().unwrap_or_default();
        let mut message = self.trace_header(&helo).into_bytes();
        message.extend_from_slice(&body.bytes);
        let received = Received {
            role: self.shared.role,
            peer: self.peer,
            helo,
            authenticated: self.authenticated.clone(),
            tls: self.conn.is_tls(),
            mail_from: tx.from,
            envid: tx.envid,
            ret: tx.ret,
            recipients: tx.recipients,
            body: message,
        };
        match self.shared.pipeline.process(received).await {
            Verdict::Accept(text) => self.reply(Reply::new(250, "2.0.0", text)),
            Verdict::Reject(reply) => self.reply(reply),
        }
    }

    /// The Received: line (RFC 5321 4.4) with the protocol as RFC 3848 names it.
    fn trace_header(&self, helo: &str) -> String {
        let protocol = match (self.conn.is_tls(), self.authenticated.is_some()) {
            (true, true) => "ESMTPSA",
            (true, false) => "ESMTPS",
            (false, true) => "ESMTPA",
            (false, false) => "ESMTP",
        };
        format!(
            "Received: from {} ({})\r\n\tby {} with {protocol}; {}\r\n",
            helo.replace(|c: char| !c.is_ascii_graphic(), "?"),
            self.peer.ip(),
            self.hostname(),
            rfc5322_date(now_secs())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_allowance_grows_by_a_second_per_500_bytes() {
        use std::time::Duration;
        let t = Duration::from_secs(600);
        assert_eq!(data_allowance(t, 0), t);
        assert_eq!(data_allowance(t, 500), Duration::from_secs(601));
        assert_eq!(data_allowance(t, 250), Duration::from_millis(600_500));
        // 10 MB at the minimum rate: 20,000 s on top; no overflow on absurd counts.
        assert_eq!(data_allowance(t, 10_000_000), Duration::from_secs(20_600));
        assert!(data_allowance(t, u64::MAX) > Duration::from_secs(1 << 40));
    }

    fn read_all(chunks: &[&[u8]], max: usize) -> (Body, Vec<u8>) {
        let mut body = Body::new(max);
        let mut rest = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let (used, done) = body.feed(c);
            if done {
                rest.extend_from_slice(&c[used..]);
                for later in &chunks[i + 1..] {
                    rest.extend_from_slice(later);
                }
                return (body, rest);
            }
            assert_eq!(used, c.len());
        }
        panic!("no end of data");
    }

    #[test]
    fn unstuffs_and_stops_at_the_dot() {
        let (b, rest) = read_all(&[b"a\r\n..b\r\n.", b"\r\nQUIT\r\n"], 100);
        assert_eq!(b.bytes, b"a\r\n.b\r\n");
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn empty_message_and_leading_dot() {
        let (b, _) = read_all(&[b".\r\n"], 100);
        assert_eq!(b.bytes, b"");
        let (b, _) = read_all(&[b"..x\r\n.\r\n"], 100);
        assert_eq!(b.bytes, b".x\r\n");
    }

    #[test]
    fn a_dot_inside_a_line_is_data() {
        let (b, _) = read_all(&[b"a.\r\n", b"b\r\n.x\r\n.\r", b"\n"], 100);
        assert_eq!(b.bytes, b"a.\r\nb\r\nx\r\n");
    }

    #[test]
    fn oversize_is_read_to_the_end_and_dropped() {
        let (b, rest) = read_all(
            &[b"0123456789\r\n", b"0123456789\r\n..\r\n.\r\nNOOP\r\n"],
            15,
        );
        assert!(b.too_big());
        assert!(b.bytes.is_empty());
        assert_eq!(rest, b"NOOP\r\n");
    }
}
