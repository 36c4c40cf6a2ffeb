//! The daemon on Redox (scheme-spec N1, M1; `../shared/spec/redox.md` §1.3, §3): both schemes
//! registered on non-blocking sockets before the null namespace, then one event loop over the
//! two sockets and the interrupt vectors (one event queue, [`RedoxPlatform::watch_fd`]).
//!
//! Each wake-up drains every request both sockets hold, hands them to [`Server::request`], ends
//! the batch with [`Server::tick`] (interrupts, parked requests, stack publication, events) and
//! writes the responses to the socket each request came from.

use super::server::Server;
use super::{NetmapView, NetworkView, Which};
use crate::platform::redox::RedoxPlatform;
use redox_scheme::scheme::{register_sync_scheme, SchemeSync};
use redox_scheme::{SignalBehavior, Socket};
use std::time::{Duration, Instant};
use syscall::error::{EAGAIN, EEXIST, EWOULDBLOCK};

/// How often the event loop logs its counters.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// The two scheme sockets, indexed by [`Which`].
pub struct Sockets([Socket; 2]);

/// Why a scheme name could not be registered.
#[derive(Debug)]
pub enum RegisterError {
    /// The name is taken (`EEXIST`): another daemon serves it, or a dead one left it behind
    /// (Redox keeps a dead daemon's scheme name registered).
    Taken(String),
    /// Anything else the kernel refused.
    Other(String, syscall::Error),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Taken(name) => write!(
                f,
                "scheme {name} already registered (a previous ptnetd still holds it? Redox keeps \
                 a dead daemon's scheme name: restart the system to free it)"
            ),
            Self::Other(name, e) => write!(f, "registering scheme {name}: {e}"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Registers `name` on `sock` for `scheme`; `EEXIST` becomes [`RegisterError::Taken`] with the
/// message the daemon logs (what `ptnet-scheme-test eexist` checks on Redox).
pub fn register_name<S: SchemeSync>(
    sock: &Socket,
    name: &str,
    scheme: &mut S,
) -> Result<(), RegisterError> {
    register_sync_scheme(sock, name, scheme).map_err(|e| {
        if e.errno == EEXIST {
            RegisterError::Taken(name.to_string())
        } else {
            RegisterError::Other(name.to_string(), e)
        }
    })
}

/// Creates both sockets and registers `network.<name>_ptnet` and `netmap.<name>_ptnet`; each
/// socket joins the platform's event queue. Must run before `setrens(0, 0)`.
pub fn register(server: &mut Server<RedoxPlatform>) -> Result<Sockets, String> {
    let mut socks = Vec::with_capacity(2);
    for which in [Which::Network, Which::Netmap] {
        let name = server.daemon().scheme_name(which);
        let sock = Socket::nonblock().map_err(|e| format!("scheme socket for {name}: {e}"))?;
        match which {
            Which::Network => register_name(&sock, &name, &mut NetworkView(server.daemon_mut())),
            Which::Netmap => register_name(&sock, &name, &mut NetmapView(server.daemon_mut())),
        }
        .map_err(|e| e.to_string())?;
        log::info!("ptnetd: scheme {name} registered");
        server
            .daemon()
            .platform()
            .watch_fd(sock.inner().raw())
            .map_err(|e| format!("event queue for {name}: {e}"))?;
        socks.push(sock);
    }
    let [net, nm]: [Socket; 2] = socks.try_into().map_err(|_| "two sockets".to_string())?;
    Ok(Sockets([net, nm]))
}

/// Serves both schemes until a socket is closed by the kernel or the device goes away (its
/// registers read all-ones). `poll`: the lost-interrupt fallback period (every ring is treated
/// as signalled at least this often, and the device's presence is checked as often).
pub fn serve(
    server: &mut Server<RedoxPlatform>,
    socks: &Sockets,
    poll: Duration,
) -> Result<(), String> {
    let mut out = Vec::new();
    let mut last_poll = Instant::now();
    let mut last_stats = Instant::now();
    loop {
        for which in [Which::Network, Which::Netmap] {
            let sock = &socks.0[which as usize];
            loop {
                match sock.next_request(SignalBehavior::Restart) {
                    Ok(Some(req)) => server.request(which, req, &mut out),
                    Ok(None) => {
                        log::info!("ptnetd: {which:?} scheme socket closed");
                        return Ok(());
                    }
                    Err(e) if e.errno == EAGAIN || e.errno == EWOULDBLOCK => break,
                    Err(e) => return Err(format!("reading {which:?} requests: {e}")),
                }
            }
        }
        let due = last_poll.elapsed() >= poll;
        if last_stats.elapsed() >= STATS_EVERY {
            last_stats = Instant::now();
            let s = server.daemon().stats();
            log::info!(
                "ptnetd: calls {} frames read {} written {} syncs {} events {} parked {}",
                s.calls,
                s.frames_read,
                s.frames_written,
                s.syncs,
                s.events,
                server.parked()
            );
        }
        if due {
            last_poll = Instant::now();
            if !server.daemon().nic().present() {
                let name = &server.daemon().nic().info().name;
                log::warn!("ptnetd: {name} went away (its registers read all-ones)");
                return Ok(());
            }
        }
        server.tick(due, &mut out);
        for (which, resp) in out.drain(..) {
            socks.0[which as usize]
                .write_response(resp, SignalBehavior::Restart)
                .map_err(|e| format!("writing a {which:?} response: {e}"))?;
        }
        use crate::platform::Platform;
        server.daemon().platform().wait_interrupts(poll);
    }
}
