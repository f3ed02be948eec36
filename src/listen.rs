//! TCP listeners with an accept backlog sized for bursts.
//!
//! `tokio::net::TcpListener::bind` asks the kernel for a backlog of 128. When more clients
//! than that connect at once (200 EHR clients reconnecting after a restart, a peer HISP
//! opening many sessions) while the accept loop is busy, the overflow SYNs are dropped and
//! those clients stall for the one-second SYN retransmit. The kernel caps the value at
//! `net.core.somaxconn` (4096 on current Linux).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

pub const BACKLOG: u32 = 1024;

pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted server can bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_burst_beyond_the_default_backlog_connects_without_accepting() {
        let l = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        // Nobody accepts: all of these must sit in the accept queue. With 128 the rest
        // would wait for SYN retransmits and this would take over a second.
        let start = std::time::Instant::now();
        let mut conns = Vec::new();
        for i in 0..300 {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(std::time::Duration::from_secs(2), connect).await {
                Ok(c) => conns.push(c.unwrap()),
                Err(_) => panic!("connection {i} waited for a SYN retransmit"),
            }
        }
        assert!(
            start.elapsed() < std::time::Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
        drop(l);
    }
}
