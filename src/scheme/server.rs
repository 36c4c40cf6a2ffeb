//! Request handling shared by Redox and the host: decoded [`Request`]s in, [`Response`]s out,
//! through redox-scheme's own dispatch (`Op::handle_sync_dont_consume`). Blocking requests that
//! would block are parked and replayed at every [`Server::tick`]; a cancellation answers a parked
//! request with `EINTR`; a close returns the handle's rings to the stack.
//!
//! The event loop around it differs: on Redox it reads the scheme sockets and waits on the
//! interrupt handles; on the host [`super::host`] plays the kernel. Both call [`Server::request`]
//! for every request of a batch, then [`Server::tick`] once.

use super::{Daemon, NetmapView, NetworkView, Which};
use crate::platform::Platform;
use redox_scheme::scheme::{IntoTag, Op, SchemeResponse, SchemeState};
use redox_scheme::{CallerCtx, Request, RequestKind, Response};
use std::collections::VecDeque;
use syscall::error::{Error, EBADF, EINTR, ENOSYS, EWOULDBLOCK};

struct Parked {
    which: Which,
    op: Op,
    caller: CallerCtx,
}

/// The daemon behind both schemes, with its parked requests.
pub struct Server<P: Platform> {
    daemon: Daemon<P>,
    parked: VecDeque<Parked>,
    state: SchemeState,
}

impl<P: Platform> std::fmt::Debug for Server<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({:?}, {} parked)", self.daemon, self.parked.len())
    }
}

fn respond(op: Op, r: SchemeResponse) -> Response {
    match r {
        SchemeResponse::Opened(o) => Response::open_dup_like(o, op),
        SchemeResponse::RegularAndNotifyOnDetach(s) => Response::new_notify_on_detach(s, op),
        SchemeResponse::Regular(s) => Response::new(s, op),
    }
}

fn would_block(r: &SchemeResponse) -> bool {
    matches!(r, SchemeResponse::Regular(Err(e)) if e.errno == EWOULDBLOCK)
}

impl<P: Platform> Server<P> {
    /// A server for `daemon`.
    pub fn new(daemon: Daemon<P>) -> Self {
        Self { daemon, parked: VecDeque::new(), state: SchemeState::new() }
    }

    /// The daemon.
    pub fn daemon(&self) -> &Daemon<P> {
        &self.daemon
    }

    /// The daemon, mutable.
    pub fn daemon_mut(&mut self) -> &mut Daemon<P> {
        &mut self.daemon
    }

    /// Gives the daemon back (e.g. to shut it down).
    pub fn into_daemon(self) -> Daemon<P> {
        self.daemon
    }

    /// Requests parked now.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// The root handle id of `which` (what registration needs).
    pub fn root(&mut self, which: Which) -> usize {
        self.daemon.root(which)
    }

    fn dispatch(&mut self, which: Which, op: &mut Op, caller: &CallerCtx) -> SchemeResponse {
        match which {
            Which::Network => op.handle_sync_dont_consume(
                caller,
                &mut NetworkView(&mut self.daemon),
                &mut self.state,
            ),
            Which::Netmap => op.handle_sync_dont_consume(
                caller,
                &mut NetmapView(&mut self.daemon),
                &mut self.state,
            ),
        }
    }

    /// Handles one request that arrived on the socket of `which`; responses go to `out`.
    pub fn request(&mut self, which: Which, req: Request, out: &mut Vec<(Which, Response)>) {
        match req.kind() {
            RequestKind::Call(call) => {
                let caller = call.caller();
                match call.op() {
                    Ok(op) => self.call(which, op, caller, out),
                    Err(call) => out.push((which, Response::new(Err(Error::new(ENOSYS)), call))),
                }
            }
            RequestKind::Cancellation(c) => {
                let at = self.parked.iter().position(|p| p.which == which && p.op.req_id() == c.id);
                if let Some(p) = at.and_then(|k| self.parked.remove(k)) {
                    out.push((which, Response::new(Err(Error::new(EINTR)), p.op)));
                }
            }
            RequestKind::OnClose { id } => self.close(which, id, out),
            _ => log::debug!("ptnetd: {which:?}: request of another kind ignored"),
        }
    }

    fn call(
        &mut self,
        which: Which,
        mut op: Op,
        caller: CallerCtx,
        out: &mut Vec<(Which, Response)>,
    ) {
        self.daemon.stats.calls += 1;
        let r = self.dispatch(which, &mut op, &caller);
        if would_block(&r) {
            self.parked.push_back(Parked { which, op, caller });
        } else {
            out.push((which, respond(op, r)));
        }
    }

    fn close(&mut self, which: Which, id: usize, out: &mut Vec<(Which, Response)>) {
        let mut k = 0;
        while k < self.parked.len() {
            if self.parked[k].which == which && self.parked[k].op.file_id() == Some(id) {
                if let Some(p) = self.parked.remove(k) {
                    out.push((which, Response::new(Err(Error::new(EBADF)), p.op)));
                }
            } else {
                k += 1;
            }
        }
        self.daemon.close(id);
    }

    /// End of a batch (after the requests of one wake-up, or an interrupt): takes interrupts
    /// (every ring with `poll`, the lost-interrupt fallback), replays parked requests in order,
    /// publishes the stack's frames and posts readiness events.
    pub fn tick(&mut self, poll: bool, out: &mut Vec<(Which, Response)>) {
        self.daemon.take_interrupts(poll);
        for _ in 0..self.parked.len() {
            let Some(mut p) = self.parked.pop_front() else { break };
            let r = self.dispatch(p.which, &mut p.op, &p.caller);
            if would_block(&r) {
                self.parked.push_back(p);
            } else {
                out.push((p.which, respond(p.op, r)));
            }
        }
        let mut events = Vec::new();
        self.daemon.end_of_batch(&mut events);
        out.extend(events.into_iter().map(|(w, id, f)| (w, Response::post_fevent(id, f))));
    }
}
