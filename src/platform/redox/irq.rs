//! Interrupts through the kernel's `irq:` scheme (spec/redox.md §1.7): vector reservation,
//! per-vector handles, and the wait on an event queue with a monotonic timer.
//!
//! An IRQ handle's `read` returns the 8-byte interrupt count while it is not acknowledged and
//! 0 bytes once it is; writing the same count back acknowledges it (a newer count makes the write
//! a no-op, so the next read reports the new interrupt). Every interrupt also raises
//! `EVENT_READ` on the handle, which is what the event queue waits for.

use super::mem::os;
use super::wire::{msi_message, parse_bsp, parse_msi_irq};
use crate::platform::{Interrupt, MsiMessage, PlatformError};
use libredox::flag::{O_CLOEXEC, O_CREAT, O_NONBLOCK, O_RDONLY, O_RDWR};
use libredox::Fd;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use syscall::data::{Event, TimeSpec};
use syscall::flag::{EventFlags, CLOCK_MONOTONIC};

/// One reserved MSI/MSI-X vector (`/scheme/irq/cpu-XX/<n>`; closing the handle frees it).
pub struct RedoxIrq {
    fd: Fd,
    irq: u8,
    warned: AtomicBool,
}

impl RedoxIrq {
    /// The `irq:` scheme number (vector − 32).
    pub fn irq(&self) -> u8 {
        self.irq
    }

    /// The CPU interrupt vector.
    pub fn vector(&self) -> u8 {
        self.irq + 32
    }

    /// The handle's fd number (to subscribe it to another event queue).
    pub fn raw_fd(&self) -> usize {
        self.fd.raw()
    }

    fn warn_once(&self, msg: std::fmt::Arguments<'_>) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!("irq {}: {msg} (further errors not logged)", self.irq);
        }
    }
}

impl std::fmt::Debug for RedoxIrq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedoxIrq(irq {}, fd {})", self.irq, self.fd.raw())
    }
}

impl Interrupt for RedoxIrq {
    /// Reads the count (never blocks: the kernel answers 0 bytes when nothing is pending) and
    /// writes it back to acknowledge.
    fn take(&self) -> bool {
        let mut count = [0u8; 8];
        match self.fd.read(&mut count) {
            Ok(8) => {
                if let Err(e) = self.fd.write(&count) {
                    self.warn_once(format_args!("acknowledge failed: {e}"));
                }
                true
            }
            Ok(0) => false,
            Ok(n) => {
                self.warn_once(format_args!("read returned {n} bytes, expected 8"));
                false
            }
            Err(e) if e.is_wouldblock() || e.is_interrupt() => false,
            Err(e) => {
                self.warn_once(format_args!("read failed: {e}"));
                false
            }
        }
    }
}

/// The local APIC id of the bootstrap processor, from `/scheme/irq/bsp`.
pub(crate) fn read_bsp_apic_id() -> Result<u32, PlatformError> {
    let fd =
        Fd::open("/scheme/irq/bsp", O_RDONLY | O_CLOEXEC, 0).map_err(os("open /scheme/irq/bsp"))?;
    let mut buf = [0u8; 8];
    let n = fd.read(&mut buf).map_err(os("read /scheme/irq/bsp"))?;
    parse_bsp(&buf, n)
        .ok_or_else(|| PlatformError::Protocol(format!("/scheme/irq/bsp returned {n} bytes")))
}

/// Reserves `n` free vectors on the CPU with local APIC id `cpu`: lists `/scheme/irq/cpu-XX`
/// (the free IRQ numbers) and creates `/scheme/irq/cpu-XX/<irq>` for each (`O_CREAT` reserves;
/// `EEXIST` means someone else took it meanwhile: try the next one).
pub(crate) fn reserve_vectors(
    cpu: u32,
    n: u16,
) -> Result<Vec<(MsiMessage, RedoxIrq)>, PlatformError> {
    if cpu > 0xff {
        return Err(PlatformError::Unsupported("MSI to a local APIC id above 255 (x2APIC)"));
    }
    let dir = format!("/scheme/irq/cpu-{cpu:02x}");
    let mut free: Vec<u8> = std::fs::read_dir(&dir)
        .map_err(|e| PlatformError::Os {
            what: "list free IRQs",
            errno: e.raw_os_error().unwrap_or(0),
        })?
        .filter_map(|entry| parse_msi_irq(entry.ok()?.file_name().to_str()?))
        .collect();
    free.sort_unstable();
    free.dedup();
    let mut out = Vec::with_capacity(usize::from(n));
    for irq in free {
        if out.len() == usize::from(n) {
            break;
        }
        let path = format!("{dir}/{irq}");
        let fd = match Fd::open(&path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0) {
            Ok(fd) => fd,
            Err(e) => {
                log::debug!("{path}: {e}; trying the next IRQ");
                continue;
            }
        };
        let Some(msg) = msi_message(cpu, irq) else { continue };
        log::debug!("reserved {path}: vector {}, MSI {msg:x?}", irq + 32);
        out.push((msg, RedoxIrq { fd, irq, warned: AtomicBool::new(false) }));
    }
    if out.len() < usize::from(n) {
        return Err(PlatformError::NotFound(format!(
            "only {} of {n} interrupt vectors free on CPU {cpu:#x}",
            out.len()
        )));
    }
    Ok(out)
}

/// Longest sleep when no event queue or timer is usable (a spurious wake-up is allowed).
const POLL: Duration = Duration::from_millis(1);

/// Event token of the timer.
const TIMER_TOKEN: usize = usize::MAX;

/// Waits for interrupts: an event queue (`/scheme/event`) subscribed to every IRQ handle and to a
/// `CLOCK_MONOTONIC` timer (`/scheme/time/4`) for the timeout.
///
/// Timer: reading its fd gives the current time, writing a time arms a one-shot event at that
/// time. A new timer is armed only when the wanted deadline is earlier than the one already
/// armed; an older timer firing later only causes a spurious wake-up, which callers allow.
pub(crate) struct Waiter {
    queue: Fd,
    timer: Option<Fd>,
    armed: Cell<Option<Instant>>,
    warned: Cell<bool>,
}

impl Waiter {
    /// Opens the queue and the timer (before `setrens`).
    pub(crate) fn open() -> Result<Self, PlatformError> {
        let queue =
            Fd::open("/scheme/event", O_RDWR | O_CLOEXEC, 0).map_err(os("open /scheme/event"))?;
        let waiter = Self { queue, timer: None, armed: Cell::new(None), warned: Cell::new(false) };
        let timer = Fd::open(&format!("/scheme/time/{CLOCK_MONOTONIC}"), O_RDWR | O_CLOEXEC, 0)
            .map_err(os("open monotonic timer"))
            .and_then(|t| waiter.subscribe(t.raw(), TIMER_TOKEN).map(|()| t));
        match timer {
            Ok(t) => Ok(Self { timer: Some(t), ..waiter }),
            Err(e) => {
                log::warn!("no timer for interrupt waits ({e}): timeouts become {POLL:?} sleeps");
                Ok(waiter)
            }
        }
    }

    /// Subscribes `fd` for `EVENT_READ`, tagged with `token`.
    pub(crate) fn subscribe(&self, fd: usize, token: usize) -> Result<(), PlatformError> {
        let event = Event { id: fd, flags: EventFlags::EVENT_READ, data: token };
        match self.queue.write(&event) {
            Ok(n) if n == event.len() => Ok(()),
            Ok(n) => Err(PlatformError::Protocol(format!(
                "event queue took {n} bytes of a subscription"
            ))),
            Err(e) => Err(os("subscribe to event queue")(e)),
        }
    }

    /// Arms the timer `timeout` from now.
    fn arm(timer: &Fd, timeout: Duration) -> Result<(), PlatformError> {
        let mut now = TimeSpec::default();
        let n = timer.read(&mut now).map_err(os("read monotonic timer"))?;
        if n != now.len() {
            return Err(PlatformError::Protocol(format!("timer read returned {n} bytes")));
        }
        let at = TimeSpec::from_nanos(now.to_nanos().saturating_add(timeout.as_nanos()));
        timer.write(&at).map_err(os("arm monotonic timer"))?;
        Ok(())
    }

    fn warn_once(&self, e: &dyn std::fmt::Display) {
        if !self.warned.replace(true) {
            log::warn!("interrupt wait: {e}; falling back to short sleeps");
        }
    }

    /// Blocks until some subscribed handle or the timer fires (or a spurious wake-up).
    pub(crate) fn wait(&self, timeout: Duration) {
        if timeout.is_zero() {
            return;
        }
        let Some(timer) = &self.timer else {
            std::thread::sleep(timeout.min(POLL));
            return;
        };
        let now = Instant::now();
        if let Some(deadline) = now.checked_add(timeout) {
            // Re-arm if nothing earlier is pending; an armed deadline already in the past whose
            // event was not seen is treated as lost (one extra timer costs one spurious wake-up).
            if self.armed.get().is_none_or(|armed| armed > deadline || armed < now) {
                if let Err(e) = Self::arm(timer, timeout) {
                    self.warn_once(&e);
                    std::thread::sleep(timeout.min(POLL));
                    return;
                }
                self.armed.set(Some(deadline));
            }
        }
        let size = std::mem::size_of::<Event>();
        let data_at = std::mem::offset_of!(Event, data);
        let mut buf = [0u8; 16 * std::mem::size_of::<Event>()];
        match self.queue.read(&mut buf) {
            Ok(n) => {
                for event in buf[..n.min(buf.len())].chunks_exact(size) {
                    const WORD: usize = std::mem::size_of::<usize>();
                    let mut token = [0u8; WORD];
                    token.copy_from_slice(&event[data_at..data_at + WORD]);
                    if usize::from_ne_bytes(token) == TIMER_TOKEN {
                        self.armed.set(None);
                    }
                }
            }
            Err(e) if e.is_interrupt() => {}
            Err(e) => {
                self.warn_once(&e);
                std::thread::sleep(timeout.min(POLL));
            }
        }
    }
}
