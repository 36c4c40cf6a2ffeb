//! virtio-baseline (issue 11, scenario 7): VM-to-VM frames through a virtio-net device with
//! split virtqueues. API first; the run itself follows.

use std::fmt;
use std::time::Duration;

/// Parameters of one virtio-baseline run.
#[derive(Debug, Clone)]
pub struct VirtioParams {
    /// Descriptor chains added per notification decision (TX) and per RX repost.
    pub batch: usize,
    /// Frame length in bytes (without the virtio-net header).
    pub frame_len: usize,
    /// Frames to send.
    pub frames: u64,
    /// Virtqueue size (power of two).
    pub queue_size: u16,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct VirtioRun {
    /// Frames VM A's driver sent.
    pub frames_sent: u64,
    /// Frames VM B's driver received in order.
    pub frames_received: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Driver-to-device notifications sent.
    pub kicks: u64,
    /// Device-to-driver notifications sent.
    pub interrupts: u64,
    /// Frame copies made.
    pub copies: u64,
}

/// Why a run failed.
#[derive(Debug)]
pub enum VirtioBenchError {
    /// Not built yet.
    NotYet,
}

impl fmt::Display for VirtioBenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotYet => write!(f, "virtio-baseline is not built yet"),
        }
    }
}

impl std::error::Error for VirtioBenchError {}

/// Runs one virtio-baseline transfer.
pub fn run(p: &VirtioParams) -> Result<VirtioRun, VirtioBenchError> {
    let _ = p;
    Err(VirtioBenchError::NotYet)
}
