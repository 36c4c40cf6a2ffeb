//! The throughput benchmark's scenarios (issue 11).

#[cfg(not(target_os = "redox"))]
pub mod virtio;
