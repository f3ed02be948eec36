//! The connection under a session: plain TCP or TLS after STARTTLS, an input buffer that
//! frames lines, and an output buffer that is flushed only before the session waits for
//! input, which is what makes PIPELINING answer a batch of commands with one write.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the TLS handshake owns the socket, or after a failed one.
    Gone,
}

/// A line taken from the input.
pub enum Line {
    /// Including its line end.
    Text(Vec<u8>),
    /// Longer than the limit; its bytes were thrown away.
    TooLong,
}

pub enum ReadError {
    Closed,
    TimedOut,
}

pub struct Conn {
    stream: Stream,
    pub input: Vec<u8>,
    output: Vec<u8>,
    /// Dropping the rest of an over-long line.
    skipping: bool,
}

impl Conn {
    pub fn new(tcp: TcpStream) -> Conn {
        Conn {
            stream: Stream::Plain(tcp),
            input: Vec::with_capacity(1024),
            output: Vec::with_capacity(512),
            skipping: false,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.output);
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(&out).await?,
            Stream::Tls(s) => {
                s.write_all(&out).await?;
                s.flush().await?;
            }
            Stream::Gone => return Err(io::ErrorKind::NotConnected.into()),
        }
        self.output = out;
        self.output.clear();
        Ok(())
    }

    /// Flushes pending replies, then reads more input (at most `timeout` waiting).
    pub async fn fill(&mut self, timeout: Duration) -> Result<(), ReadError> {
        self.flush().await.map_err(|_| ReadError::Closed)?;
        // Straight into the input buffer: a read buffer inside this future would be held by
        // every idle session for as long as it waits.
        self.input.reserve(4096);
        let input = &mut self.input;
        let read = async {
            match &mut self.stream {
                Stream::Plain(s) => s.read_buf(input).await,
                Stream::Tls(s) => s.read_buf(input).await,
                Stream::Gone => Ok(0),
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err(ReadError::TimedOut),
            Ok(Err(_)) | Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Gives back memory after a large message so idle sessions stay small.
    pub fn shrink(&mut self) {
        if self.input.is_empty() && self.input.capacity() > 64 * 1024 {
            self.input = Vec::with_capacity(1024);
        }
    }

    /// The next complete line in the input, if there is one.
    pub fn take_line(&mut self, max: usize) -> Option<Line> {
        match memchr::memchr(b'\n', &self.input) {
            Some(i) => {
                let line: Vec<u8> = self.input.drain(..=i).collect();
                if std::mem::take(&mut self.skipping) || line.len() > max {
                    Some(Line::TooLong)
                } else {
                    Some(Line::Text(line))
                }
            }
            None => {
                if self.input.len() > max {
                    self.skipping = true;
                    self.input.clear();
                }
                None
            }
        }
    }

    /// Switches to TLS. Anything the client sent after STARTTLS in plaintext is thrown away
    /// (RFC 3207 section 4.2: it could have been injected by a man in the middle).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor, timeout: Duration) -> io::Result<()> {
        self.flush().await?;
        self.input.clear();
        self.skipping = false;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = match &mut self.stream {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Gone => Ok(()),
        };
    }
}
