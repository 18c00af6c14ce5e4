//! The userland proxy: TCP ports published on a loopback address (`-p
//! 127.0.0.1:8080:80`) are served by a small process that accepts on the host port
//! and copies each connection to the container's address, as dockerd's docker-proxy
//! serves loopback traffic.
//!
//! Why not netavark's DNAT for these: traffic to 127.0.0.1 never reaches a DNAT in
//! PREROUTING, so netavark turns on `route_localnet` on the bridge and DNATs in
//! OUTPUT, which makes the host's loopback routable from the bridge (the weakness
//! behind CVE-2020-8558). Nothing from outside the host can reach a loopback address,
//! so DNAT's one advantage (the client's own source address) does not apply. And it
//! costs every start and stop some twenty `iptables` processes, while a container
//! whose only ports are on loopback can take a namespace from the pool
//! ([`super::pool`]) and start as fast as one with no port at all.
//!
//! Each proxy is `berthd userland-proxy --to ADDR:PORT` (the running berthd binary,
//! through /proc/self/exe), in a session of its own, with the port's socket (bound
//! by berthd, see [`super::ports::hold`]) as descriptor 3. It outlives berthd, so the
//! port keeps answering while berthd restarts, and is identified afterwards by its
//! pid and start time (recorded with the port in the live state) before any signal.
//! It never binds or resolves anything itself.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

use serde::{Deserialize, Serialize};

use super::store::PublishedPort;

/// The hidden berthd subcommand that runs a proxy.
pub const SUBCOMMAND: &str = "userland-proxy";
/// The descriptor a proxy finds its port's socket on.
const LISTEN_FD: i32 = 3;
/// Bytes copied per read; large, for throughput on loopback.
const CHUNK: usize = 256 * 1024;

/// A running proxy, as recorded in the live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyProcess {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: tells this process from a later one with the pid.
    pub start_time: u64,
}

/// Whether a host port is served by a proxy rather than netavark's forwarding: TCP on
/// a loopback address.
pub fn proxied(host_ip: &str, protocol: &str) -> bool {
    protocol == "tcp"
        && host_ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a published port is served by a proxy.
pub fn is_proxied(p: &PublishedPort) -> bool {
    proxied(&p.host_ip, &p.protocol)
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // rest starts at field 3 (state): field 22 is the 20th from here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Starts a proxy serving `listener` (a bound TCP socket) towards `to`. The child
/// is reaped by the caller's runtime once it ends.
pub fn spawn(listener: &OwnedFd, to: SocketAddr) -> std::io::Result<ProxyProcess> {
    let fd = listener.as_raw_fd();
    let from = socket2::SockRef::from(listener)
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0("berthd")
        .arg(SUBCOMMAND)
        .arg("--from")
        .arg(from)
        .arg("--to")
        .arg(to.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl,
    // setsid), on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            if fd == LISTEN_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Its own session: a signal to berthd's process group (a terminal's
            // ^C, systemd's stop) leaves the ports served.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = tokio::process::Command::from(cmd).spawn()?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| std::io::Error::other("the proxy has no pid"))?;
    // Reaped whenever it ends (killed at the container's stop, or never while berthd
    // runs); berthd does not wait for it here.
    tokio::spawn(async move {
        let mut child = child;
        let _ = child.wait().await;
    });
    let start_time =
        start_time(pid).ok_or_else(|| std::io::Error::other("the proxy died at once"))?;
    Ok(ProxyProcess { pid, start_time })
}

/// Ends a proxy if it still runs (and is still that process).
pub fn stop(p: &ProxyProcess) {
    if start_time(p.pid) == Some(p.start_time) {
        // SAFETY: kill(2) with a pid checked above; no memory is involved.
        unsafe {
            libc::kill(p.pid, libc::SIGKILL);
        }
    }
}

/// Ends the proxies of these ports.
pub fn stop_all(ports: &[PublishedPort]) {
    for p in ports {
        if let Some(proxy) = &p.proxy {
            stop(proxy);
        }
    }
}

/// Whether a recorded proxy still runs.
pub fn alive(p: &ProxyProcess) -> bool {
    start_time(p.pid) == Some(p.start_time)
}

/// `berthd userland-proxy --to ADDR:PORT`: serve the socket on descriptor 3 until
/// killed. Returns only on bad arguments or a socket that cannot listen.
pub fn child_main(args: &[String]) -> std::io::Result<()> {
    // --from is the host port, for whoever reads ps; the socket is what counts.
    let to: SocketAddr = match args {
        [from, _, flag, to] if from == "--from" && flag == "--to" => to
            .parse()
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, format!("--to {to}: {e}")))?,
        _ => {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                format!("usage: berthd {SUBCOMMAND} --from HOST:PORT --to ADDR:PORT (with the socket as descriptor 3)"),
            ))
        }
    };
    // SAFETY: berthd gives this process the socket as descriptor 3 and nothing else
    // uses that descriptor.
    let sock = unsafe { socket2::Socket::from_raw_fd(LISTEN_FD) };
    sock.set_cloexec(true)?;
    // berthd listens on it already; again is harmless and covers a bound one.
    sock.listen(1024)?;
    let listener: TcpListener = sock.into();
    loop {
        match listener.accept() {
            Ok((client, _)) => {
                // A thread per connection: few connections, and each is two copies.
                let _ = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || serve(client, to));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Out of descriptors or memory: wait a little rather than spin.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

fn serve(client: TcpStream, to: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(to) else {
        // The container does not listen (yet): the client sees the connection end,
        // as with docker-proxy.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || copy(u2, c2));
    copy(client, upstream);
    if let Ok(h) = back {
        let _ = h.join();
    }
}

/// Copies until end of file, then passes the end on (half-close), as a TCP peer sees it.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Read);
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_tcp_on_loopback_is_proxied() {
        assert!(proxied("127.0.0.1", "tcp"));
        assert!(proxied("127.0.0.53", "tcp"));
        assert!(proxied("::1", "tcp"));
        assert!(!proxied("127.0.0.1", "udp"));
        assert!(!proxied("0.0.0.0", "tcp"));
        assert!(!proxied("", "tcp"));
        assert!(!proxied("10.1.2.3", "tcp"));
    }

    #[test]
    fn start_time_reads_this_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(-1), None);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(child_main(&[]).is_err());
        assert!(child_main(&["--to".into(), "10.0.0.2:80".into()]).is_err());
        let bad = ["--from", "127.0.0.1:1", "--to", "nowhere"].map(String::from);
        assert!(child_main(&bad).is_err());
    }
}
