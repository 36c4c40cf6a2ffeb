//! The pure part of the Redox platform: pcid's channel protocol and the small encodings the
//! other files need. No system calls here, so this file is compiled and unit-tested on every host
//! (the host build includes it from `platform/mod.rs` under `cfg(test)`).
//!
//! ## pcid channel protocol (spec/redox.md §1.4)
//! A request is **one `write()`** of the bincode-1 encoding of `PcidClientRequest`; the reply is an
//! **8-byte little-endian length**, then that many bytes of bincode-1 `PcidClientResponse`.
//! The message types are declared here with serde derives and encoded by the `bincode` 1.x crate,
//! as pcid does (`bincode::serialize_into`/`deserialize_from`: little endian, fixed-width
//! integers, enum tag = `u32` = the variant's position). Every variant is declared in pcid's
//! order, so the tags are right by construction; the tests pin the bytes:
//!
//! ```text
//!   ReadConfig(0x10)           07 00 00 00 | 10 00
//!   reply ReadConfig(v)        08 00 00 00 00 00 00 00 | 09 00 00 00 | v as u32 LE
//!   EnableFeature(MsiX)        04 00 00 00 | 01 00 00 00
//!   reply FeatureEnabled(MsiX) 08 00 00 00 00 00 00 00 | 04 00 00 00 | 01 00 00 00
//! ```
//!
//! Variants whose payload layout is not pinned down by the spec (`SetFeatureInfo`'s request,
//! `Config`, whose `PciFunction` changed in 2026, `FeatureInfo`'s MSI-X info, …) are declared
//! without their payload: such a request cannot be encoded (an error, not wrong bytes), and such
//! a reply is recognised by its tag and the rest of its (length-framed) payload skipped. MSI-X
//! table location and BARs come from config space instead (`platform::cfg`). Anything malformed
//! is a [`PlatformError::Protocol`], never a panic.
#![cfg_attr(not(target_os = "redox"), allow(dead_code))]

use crate::platform::{MsiMessage, PlatformError};
use bincode::Options;
use serde::{Deserialize, Serialize};

/// Largest reply payload accepted. Our replies are at most a few dozen bytes; pcid's own client
/// refuses more than 1 MiB.
pub const MAX_RESPONSE_LEN: u64 = 1 << 20;

/// Page size of the memory and pcid mmap interfaces.
pub const PAGE_SIZE: usize = 4096;

/// `PciFeature` (bincode tag in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Feature {
    /// MSI (0).
    Msi,
    /// MSI-X (1).
    MsiX,
}

/// `PcidClientRequest`, every variant in pcid's order (bincode tag in parentheses).
// The variant names are pcid's own (`RequestConfig`, …).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// `EnableDevice` (0): bus master + memory + I/O decode; also disables MSI/MSI-X.
    EnableDevice,
    /// `RequestConfig` (1).
    RequestConfig,
    /// `RequestFeatures` (2).
    RequestFeatures,
    /// `RequestVendorCapabilities` (3).
    RequestVendorCapabilities,
    /// `EnableFeature(feature)` (4).
    EnableFeature(Feature),
    /// `FeatureInfo(feature)` (5). Its reply's info is not decoded.
    FeatureInfo(Feature),
    /// `SetFeatureInfo(info)` (6): declared to keep the tags in place; its payload is not in the
    /// spec, so encoding it is an error.
    #[serde(skip_serializing)]
    SetFeatureInfo,
    /// `ReadConfig(offset)` (7).
    ReadConfig(u16),
    /// `WriteConfig(offset, value)` (8).
    WriteConfig(u16, u32),
}

/// `PcidServerResponseError` (bincode tag in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerError {
    /// `NonexistentFeature(feature)` (0): the function has no such capability.
    NonexistentFeature(Feature),
    /// `InvalidBitPattern` (1).
    InvalidBitPattern,
    /// A variant added after the spec was written (the enum is `#[non_exhaustive]` in pcid); its
    /// payload is skipped.
    #[serde(other, skip_serializing)]
    Other,
}

/// `PcidClientResponse`, every variant in pcid's order (bincode tag in parentheses). Variants
/// marked "not decoded" carry a payload in pcid that is skipped here (and cannot be encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `EnabledDevice` (0).
    EnabledDevice,
    /// `Config(SubdriverArguments)` (1), not decoded.
    #[serde(skip_serializing)]
    Config,
    /// `AllFeatures(Vec<PciFeature>)` (2), not decoded.
    #[serde(skip_serializing)]
    AllFeatures,
    /// `VendorCapabilities(Vec<VendorSpecificCapability>)` (3), not decoded.
    #[serde(skip_serializing)]
    VendorCapabilities,
    /// `FeatureEnabled(feature)` (4).
    FeatureEnabled(Feature),
    /// `FeatureStatus(feature, status)` (5), not decoded.
    #[serde(skip_serializing)]
    FeatureStatus,
    /// `Error(error)` (6).
    Error(ServerError),
    /// `FeatureInfo(feature, info)` (7): the feature only; the info after it is not decoded.
    FeatureInfo(Feature),
    /// `SetFeatureInfo(feature)` (8), not decoded.
    #[serde(skip_serializing)]
    SetFeatureInfo,
    /// `ReadConfig(value)` (9).
    ReadConfig(u32),
    /// `WriteConfig` (10).
    WriteConfig,
}

impl Response {
    /// `true` if pcid's payload of this variant goes beyond what is declared here, so bytes left
    /// after decoding are expected rather than an error.
    fn payload_skipped(&self) -> bool {
        matches!(
            self,
            Self::Config
                | Self::AllFeatures
                | Self::VendorCapabilities
                | Self::FeatureStatus
                | Self::FeatureInfo(_)
                | Self::SetFeatureInfo
                | Self::Error(ServerError::Other)
        )
    }
}

fn protocol(msg: impl Into<String>) -> PlatformError {
    PlatformError::Protocol(msg.into())
}

/// pcid's bincode configuration: that of `bincode::serialize`/`deserialize_from` (little endian,
/// fixed-width integers), with a size limit. Trailing bytes are checked by the caller.
fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .allow_trailing_bytes()
        .with_limit(MAX_RESPONSE_LEN)
}

impl Request {
    /// The bincode-1 bytes of this request (what one `write()` on the channel carries). Fails
    /// only for a variant whose payload is not declared ([`Request::SetFeatureInfo`]).
    pub fn encode(&self) -> Result<Vec<u8>, PlatformError> {
        codec().serialize(self).map_err(|e| protocol(format!("pcid request {self:?}: {e}")))
    }
}

/// Decodes a reply payload (the bytes after the length prefix).
pub fn decode_response(payload: &[u8]) -> Result<Response, PlatformError> {
    let mut rest = payload;
    let resp: Response =
        codec().deserialize_from(&mut rest).map_err(|e| protocol(format!("pcid reply: {e}")))?;
    if !rest.is_empty() && !resp.payload_skipped() {
        return Err(protocol(format!("pcid reply {resp:?} has {} trailing bytes", rest.len())));
    }
    Ok(resp)
}

/// The payload length announced by a reply's 8-byte prefix, refused above [`MAX_RESPONSE_LEN`].
pub fn frame_len(prefix: [u8; 8]) -> Result<usize, PlatformError> {
    let len = u64::from_le_bytes(prefix);
    if len > MAX_RESPONSE_LEN {
        return Err(protocol(format!("pcid reply length {len} too large")));
    }
    usize::try_from(len).map_err(|_| protocol("pcid reply length overflows usize"))
}

/// Decodes one whole reply: the 8-byte length prefix, then exactly that many payload bytes.
pub fn decode_frame(frame: &[u8]) -> Result<Response, PlatformError> {
    let prefix = frame
        .get(..8)
        .and_then(|p| <[u8; 8]>::try_from(p).ok())
        .ok_or_else(|| protocol(format!("pcid reply of {} bytes has no length", frame.len())))?;
    let len = frame_len(prefix)?;
    let payload = &frame[8..];
    if payload.len() != len {
        return Err(protocol(format!(
            "pcid reply announces {len} bytes, carries {}",
            payload.len()
        )));
    }
    decode_response(payload)
}

/// The two calls a channel transaction makes; errors are errno values.
pub trait ChannelIo {
    /// One `write()`.
    fn write(&mut self, buf: &[u8]) -> Result<usize, i32>;
    /// One `read()`; `Ok(0)` is end of data.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, i32>;
}

/// Sends `req` and reads and decodes its reply.
///
/// The request goes out in one `write`. The reply is read as pcid's own client does: exactly 8
/// prefix bytes, then exactly `len` payload bytes (pcid may hand them out in pieces), never
/// beyond, because pcid answers a read past the end of a reply with `EINVAL`. An oversized reply
/// is drained (so the channel stays usable) and refused.
pub fn transact(io: &mut impl ChannelIo, req: &Request) -> Result<Response, PlatformError> {
    let bytes = req.encode()?;
    match io.write(&bytes) {
        Ok(n) if n == bytes.len() => {}
        Ok(n) => return Err(protocol(format!("pcid took {n} of {} request bytes", bytes.len()))),
        Err(errno) => return Err(PlatformError::Os { what: "pcid request write", errno }),
    }
    let mut prefix = [0u8; 8];
    read_exact(io, &mut prefix)?;
    let len = match frame_len(prefix) {
        Ok(len) => len,
        Err(e) => {
            drain(io);
            return Err(e);
        }
    };
    let mut payload = vec![0u8; len];
    read_exact(io, &mut payload)?;
    decode_response(&payload)
}

fn read_exact(io: &mut impl ChannelIo, buf: &mut [u8]) -> Result<(), PlatformError> {
    let mut have = 0;
    while have < buf.len() {
        match io.read(&mut buf[have..]) {
            Ok(0) => return Err(protocol(format!("pcid reply truncated after {have} bytes"))),
            Ok(n) => have += n.min(buf.len() - have),
            Err(errno) => return Err(PlatformError::Os { what: "pcid reply read", errno }),
        }
    }
    Ok(())
}

/// Reads and discards whatever is left of a refused reply (bounded).
fn drain(io: &mut impl ChannelIo) {
    let mut sink = [0u8; 4096];
    for _ in 0..(MAX_RESPONSE_LEN as usize / sink.len() + 1) {
        match io.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The address of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciAddr {
    /// Segment (domain).
    pub segment: u16,
    /// Bus.
    pub bus: u8,
    /// Device (0..32).
    pub device: u8,
    /// Function (0..8).
    pub function: u8,
}

impl PciAddr {
    /// Parses a `/scheme/pci` entry in either of pcid's two formats, or the colon form (hex
    /// fields; spec/redox.md §1.4):
    /// - `SSSS--BB--DD.F` (`0000--00--03.0`): Redox `base` since 2026-02-07 (pci_types 0.10.1);
    /// - `SS-BB--DD.F` (`00-00--03.0`): earlier pcid (pci_types 0.10.0), e.g. the test kit's;
    /// - `SSSS:BB:DD.F` (`0000:00:03.0`).
    pub fn parse(s: &str) -> Option<Self> {
        let (segment, bus, dev_fn) = match s.rsplit_once("--") {
            Some((seg_bus, dev_fn)) => {
                let (segment, bus) =
                    seg_bus.split_once("--").or_else(|| seg_bus.split_once('-'))?;
                (segment, bus, dev_fn)
            }
            None => {
                let (segment, rest) = s.split_once(':')?;
                let (bus, dev_fn) = rest.split_once(':')?;
                (segment, bus, dev_fn)
            }
        };
        let (device, function) = dev_fn.split_once('.')?;
        let hex = |field: &str, max_digits: usize| -> Option<u16> {
            let ok = (1..=max_digits).contains(&field.len())
                && field.bytes().all(|b| b.is_ascii_hexdigit());
            if ok {
                u16::from_str_radix(field, 16).ok()
            } else {
                None
            }
        };
        let addr = Self {
            segment: hex(segment, 4)?,
            bus: u8::try_from(hex(bus, 2)?).ok()?,
            device: u8::try_from(hex(device, 2)?).ok()?,
            function: u8::try_from(hex(function, 1)?).ok()?,
        };
        (addr.device < 32 && addr.function < 8).then_some(addr)
    }

    /// Finds the function address in a path such as `/scheme/pci/0000--00--03.0/channel` or
    /// `pci:0000--00--03.0/channel` (what `fpath` on a channel may return).
    pub fn from_path(path: &str) -> Option<Self> {
        path.split('/').find_map(|comp| {
            Self::parse(comp).or_else(|| comp.split_once(':').and_then(|(_, r)| Self::parse(r)))
        })
    }

    /// The name drivers use, `pci-SSSS-BB-DD.F` (pcid's `PciFunction::name`: pci_types' Display
    /// `{:04x}:{:02x}:{:02x}.{}` with `:` replaced by `-`).
    pub fn name(&self) -> String {
        format!("pci-{:04x}-{:02x}-{:02x}.{}", self.segment, self.bus, self.device, self.function)
    }

    /// `metadata[1]` of a config access `call` on `/scheme/pci/access`: segment at bit 28, bus
    /// at 20, device at 15, function at 12, offset in the low 12 bits.
    pub fn access_metadata(&self, offset: u16) -> u64 {
        (u64::from(self.segment) << 28)
            | (u64::from(self.bus) << 20)
            | (u64::from(self.device & 0x1f) << 15)
            | (u64::from(self.function & 7) << 12)
            | u64::from(offset & 0xfff)
    }
}

/// One `/scheme/pci` entry: its name exactly as pcid listed it, and the address it names.
///
/// Paths under the entry are built from the listed name, never re-formatted from the address:
/// the two pcid generations spell the same address differently (`00-00--03.0` and
/// `0000--00--03.0`) and each knows only its own spelling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciEntry {
    /// The function's address.
    pub addr: PciAddr,
    /// The entry's name as listed.
    pub name: String,
}

impl PciEntry {
    /// A listed entry name, if it names a function (other entries, e.g. `access`, give `None`).
    pub fn parse(name: &str) -> Option<Self> {
        PciAddr::parse(name).map(|addr| Self { addr, name: name.to_owned() })
    }

    /// `/scheme/pci/<entry as listed>/channel`.
    pub fn channel_path(&self) -> String {
        format!("/scheme/pci/{}/channel", self.name)
    }
}

/// Cache type of a BAR mapping through the pcid channel (`memtype` of the mmap offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemType {
    /// Write-back (0).
    WriteBack = 0,
    /// Uncacheable (1).
    Uncacheable = 1,
    /// Write-combining (2).
    WriteCombining = 2,
}

impl MemType {
    /// The memory scheme's suffix for this type (`physical@uc`, …).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::WriteBack => "wb",
            Self::Uncacheable => "uc",
            Self::WriteCombining => "wc",
        }
    }
}

/// The mmap offset that maps BAR `bir` through a pcid channel fd: `(bir << 61) | (memtype << 59)`.
pub fn bar_mmap_offset(bir: u8, memtype: MemType) -> u64 {
    (u64::from(bir & 7) << 61) | ((memtype as u64) << 59)
}

/// Rounds `len` up to whole pages (`None` on overflow).
pub fn round_up_page(len: usize) -> Option<usize> {
    len.checked_next_multiple_of(PAGE_SIZE)
}

/// `true` if a 32-bit access at `offset` lies inside a BAR of `size` bytes and is 4-aligned.
pub fn access_in_bar(offset: u32, size: u64) -> bool {
    offset.is_multiple_of(4) && u64::from(offset) + 4 <= size
}

/// The x86 MSI message for IRQ `irq` of the `irq:` scheme on the CPU with local APIC id
/// `lapic_id`: address `0xFEE0_0000 | (lapic_id << 12)`, data = vector = `irq + 32` (fixed
/// delivery, edge). `None` if the APIC id needs x2APIC (> 255) or the vector does not exist.
pub fn msi_message(lapic_id: u32, irq: u8) -> Option<MsiMessage> {
    let lapic = u8::try_from(lapic_id).ok()?;
    let vector = irq.checked_add(32)?;
    Some(MsiMessage { address: 0xfee0_0000 | (u64::from(lapic) << 12), data: u32::from(vector) })
}

/// The BSP's local APIC id from what a read of `/scheme/irq/bsp` returned (`n` bytes: the kernel
/// writes a `u32` and reports 8 bytes; older kernels may report 4).
pub fn parse_bsp(buf: &[u8], n: usize) -> Option<u32> {
    if n < 4 || n > buf.len() {
        return None;
    }
    let bytes: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// An IRQ number that may be reserved for MSI from a `/scheme/irq/cpu-XX` listing entry:
/// 16..=223 (0..15 are the legacy lines on the BSP; vector = irq + 32 must fit a `u8`).
pub fn parse_msi_irq(entry: &str) -> Option<u8> {
    if entry.is_empty() || !entry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    entry.parse::<u8>().ok().filter(|n| (16..=223).contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn enc(req: Request) -> Vec<u8> {
        req.encode().expect("encodable request")
    }

    #[test]
    fn requests_are_byte_exact() {
        assert_eq!(enc(Request::ReadConfig(0x10)), [7, 0, 0, 0, 0x10, 0]);
        assert_eq!(enc(Request::ReadConfig(0xffc)), [7, 0, 0, 0, 0xfc, 0x0f]);
        assert_eq!(
            enc(Request::WriteConfig(0x04, 0x0000_0407)),
            [8, 0, 0, 0, 0x04, 0, 0x07, 0x04, 0, 0]
        );
        assert_eq!(enc(Request::EnableDevice), [0, 0, 0, 0]);
        assert_eq!(enc(Request::RequestConfig), [1, 0, 0, 0]);
        assert_eq!(enc(Request::RequestVendorCapabilities), [3, 0, 0, 0]);
        assert_eq!(enc(Request::EnableFeature(Feature::MsiX)), [4, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(enc(Request::EnableFeature(Feature::Msi)), [4, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(enc(Request::FeatureInfo(Feature::MsiX)), [5, 0, 0, 0, 1, 0, 0, 0]);
        // A variant whose payload is not declared is refused, not sent as a bare tag.
        assert!(is_protocol(Request::SetFeatureInfo.encode()));
    }

    #[test]
    fn requests_round_trip_as_pcid_reads_them() {
        for req in [
            Request::EnableDevice,
            Request::RequestFeatures,
            Request::EnableFeature(Feature::Msi),
            Request::FeatureInfo(Feature::MsiX),
            Request::ReadConfig(0xffc),
            Request::WriteConfig(0x44, 0xdead_beef),
        ] {
            let bytes = enc(req);
            assert_eq!(bincode::deserialize::<Request>(&bytes).ok(), Some(req), "{bytes:?}");
        }
    }

    #[test]
    fn replies_decode_byte_exact() {
        let f = [8, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0x36, 0x1b, 0x0d, 0x00];
        assert_eq!(decode_frame(&f), Ok(Response::ReadConfig(0x000d_1b36)));
        assert_eq!(decode_frame(&frame(&[10, 0, 0, 0])), Ok(Response::WriteConfig));
        assert_eq!(decode_frame(&frame(&[0, 0, 0, 0])), Ok(Response::EnabledDevice));
        assert_eq!(
            decode_frame(&frame(&[4, 0, 0, 0, 1, 0, 0, 0])),
            Ok(Response::FeatureEnabled(Feature::MsiX))
        );
        // FeatureInfo(MsiX, <undecoded info>)
        assert_eq!(
            decode_response(&[7, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]),
            Ok(Response::FeatureInfo(Feature::MsiX))
        );
        // Config(...) and friends are recognised by tag, their payload skipped.
        assert_eq!(decode_response(&[1, 0, 0, 0, 0xaa, 0xbb]), Ok(Response::Config));
        assert_eq!(
            decode_response(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Ok(Response::AllFeatures)
        );
        assert_eq!(decode_response(&[5, 0, 0, 0, 1, 0, 0, 0, 1]), Ok(Response::FeatureStatus));
        assert_eq!(decode_response(&[8, 0, 0, 0, 1, 0, 0, 0]), Ok(Response::SetFeatureInfo));
        // What serde encodes is what the hand-written layout says.
        let ours = bincode::serialize(&Response::ReadConfig(0x000d_1b36)).ok();
        assert_eq!(ours.as_deref(), Some(&f[8..]));
    }

    #[test]
    fn error_replies_decode() {
        assert_eq!(
            decode_frame(&frame(&[6, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])),
            Ok(Response::Error(ServerError::NonexistentFeature(Feature::MsiX)))
        );
        assert_eq!(
            decode_frame(&frame(&[6, 0, 0, 0, 1, 0, 0, 0])),
            Ok(Response::Error(ServerError::InvalidBitPattern))
        );
        assert_eq!(
            decode_response(&[6, 0, 0, 0, 9, 0, 0, 0, 0xff]),
            Ok(Response::Error(ServerError::Other))
        );
    }

    fn is_protocol<T: std::fmt::Debug>(r: Result<T, PlatformError>) -> bool {
        matches!(r, Err(PlatformError::Protocol(_)))
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        // Truncated payloads.
        assert!(is_protocol(decode_response(&[])));
        assert!(is_protocol(decode_response(&[9, 0, 0])));
        assert!(is_protocol(decode_response(&[9, 0, 0, 0, 1, 2, 3])));
        assert!(is_protocol(decode_response(&[4, 0, 0, 0, 1])));
        assert!(is_protocol(decode_response(&[6, 0, 0, 0, 0, 0, 0, 0])));
        // Trailing garbage, unknown tags, unknown features.
        assert!(is_protocol(decode_response(&[10, 0, 0, 0, 0])));
        assert!(is_protocol(decode_response(&[9, 0, 0, 0, 1, 2, 3, 4, 5])));
        assert!(is_protocol(decode_response(&[11, 0, 0, 0])));
        assert!(is_protocol(decode_response(&[0xff, 0xff, 0xff, 0xff])));
        assert!(is_protocol(decode_response(&[4, 0, 0, 0, 2, 0, 0, 0])));
        // Frames: no prefix, wrong length, absurd length.
        assert!(is_protocol(decode_frame(&[4, 0, 0])));
        assert!(is_protocol(decode_frame(&[5, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0])));
        assert!(is_protocol(decode_frame(&[3, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0])));
        assert!(is_protocol(decode_frame(&[0xff; 16])));
        assert!(is_protocol(frame_len(u64::MAX.to_le_bytes())));
        assert_eq!(frame_len(4u64.to_le_bytes()), Ok(4));
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator (xorshift) instead of a proptest dependency here.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len % 40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 12) as u8
                })
                .collect();
            let _ = decode_response(&bytes);
            let _ = decode_frame(&bytes);
        }
    }

    /// A fake pcid channel: records writes and serves a reply in chunks of `chunk` bytes,
    /// answering reads past the end with `EINVAL` as pcid does.
    struct Fake {
        written: Vec<Vec<u8>>,
        reply: VecDeque<u8>,
        chunk: usize,
        write_result: Option<Result<usize, i32>>,
        reads: usize,
    }

    impl Fake {
        fn new(reply: Vec<u8>, chunk: usize) -> Self {
            Self { written: vec![], reply: reply.into(), chunk, write_result: None, reads: 0 }
        }
    }

    impl ChannelIo for Fake {
        fn write(&mut self, buf: &[u8]) -> Result<usize, i32> {
            self.written.push(buf.to_vec());
            self.write_result.unwrap_or(Ok(buf.len()))
        }
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, i32> {
            self.reads += 1;
            if self.reply.is_empty() {
                return Err(22);
            }
            let n = buf.len().min(self.chunk).min(self.reply.len());
            for b in buf.iter_mut().take(n) {
                *b = self.reply.pop_front().unwrap_or(0);
            }
            Ok(n)
        }
    }

    #[test]
    fn transaction_reads_exactly_one_reply() {
        let reply = frame(&[9, 0, 0, 0, 0x78, 0x56, 0x34, 0x12]);
        for chunk in [1, 3, 8, 9, 64] {
            let mut io = Fake::new(reply.clone(), chunk);
            assert_eq!(
                transact(&mut io, &Request::ReadConfig(0x10)),
                Ok(Response::ReadConfig(0x1234_5678))
            );
            assert_eq!(io.written, vec![vec![7, 0, 0, 0, 0x10, 0]]);
            assert!(io.reply.is_empty(), "chunk {chunk}: reply fully consumed");
        }
        // Prefix, then payload, when pcid hands the reply out at once.
        let mut io = Fake::new(reply, 64);
        transact(&mut io, &Request::ReadConfig(0)).ok();
        assert_eq!(io.reads, 2);
    }

    #[test]
    fn transaction_never_reads_past_the_reply() {
        // Two replies queued back to back: the first transaction must leave the second intact.
        let mut both = frame(&[10, 0, 0, 0]);
        both.extend(frame(&[9, 0, 0, 0, 1, 0, 0, 0]));
        let mut io = Fake::new(both, 64);
        assert_eq!(transact(&mut io, &Request::WriteConfig(4, 7)), Ok(Response::WriteConfig));
        assert_eq!(transact(&mut io, &Request::ReadConfig(0)), Ok(Response::ReadConfig(1)));
    }

    #[test]
    fn transaction_errors() {
        // Truncated reply: end of data inside the prefix, then inside the payload.
        struct Eof(Fake);
        impl ChannelIo for Eof {
            fn write(&mut self, b: &[u8]) -> Result<usize, i32> {
                self.0.write(b)
            }
            fn read(&mut self, b: &mut [u8]) -> Result<usize, i32> {
                if self.0.reply.is_empty() {
                    Ok(0)
                } else {
                    self.0.read(b)
                }
            }
        }
        let mut eof = Eof(Fake::new(vec![8, 0, 0], 64));
        assert!(is_protocol(transact(&mut eof, &Request::ReadConfig(0))));
        let mut eof = Eof(Fake::new(frame(&[9, 0, 0, 0, 1])[..11].to_vec(), 64));
        assert!(is_protocol(transact(&mut eof, &Request::ReadConfig(0))));

        // Read error (pcid's EINVAL when no reply is pending) surfaces as Os.
        let mut io = Fake::new(vec![], 64);
        assert_eq!(
            transact(&mut io, &Request::ReadConfig(0)),
            Err(PlatformError::Os { what: "pcid reply read", errno: 22 })
        );

        // Write errors and short writes.
        let mut io = Fake::new(frame(&[10, 0, 0, 0]), 64);
        io.write_result = Some(Err(9));
        assert_eq!(
            transact(&mut io, &Request::WriteConfig(0, 0)),
            Err(PlatformError::Os { what: "pcid request write", errno: 9 })
        );
        io.write_result = Some(Ok(3));
        assert!(is_protocol(transact(&mut io, &Request::WriteConfig(0, 0))));

        // Oversized reply: refused and drained.
        let mut big = (MAX_RESPONSE_LEN + 1).to_le_bytes().to_vec();
        big.extend([0u8; 100]);
        let mut io = Fake::new(big, 64);
        assert!(is_protocol(transact(&mut io, &Request::ReadConfig(0))));
        assert!(io.reply.is_empty());

        // Garbage payload of the announced length.
        let mut io = Fake::new(frame(&[0xde, 0xad, 0xbe, 0xef, 0]), 64);
        assert!(is_protocol(transact(&mut io, &Request::ReadConfig(0))));
        // Valid but unexpected reply kinds are decoded; the caller rejects them.
        let mut io = Fake::new(frame(&[10, 0, 0, 0]), 2);
        assert_eq!(transact(&mut io, &Request::ReadConfig(0)), Ok(Response::WriteConfig));
    }

    #[test]
    fn pci_addresses() {
        let a = PciAddr { segment: 0, bus: 0, device: 3, function: 0 };
        // Both /scheme/pci spellings (current base, and the pcid of the test kit) and the colon
        // form name the same function.
        assert_eq!(PciAddr::parse("0000--00--03.0"), Some(a));
        assert_eq!(PciAddr::parse("00-00--03.0"), Some(a));
        assert_eq!(PciAddr::parse("0000:00:03.0"), Some(a));
        assert_eq!(a.name(), "pci-0000-00-03.0");
        let b = PciAddr { segment: 0x1a, bus: 0xff, device: 0x1f, function: 7 };
        assert_eq!(PciAddr::parse("001a--ff--1f.7"), Some(b));
        assert_eq!(PciAddr::parse("1a-ff--1f.7"), Some(b));
        assert_eq!(PciAddr::parse("001a:ff:1f.7"), Some(b));
        assert_eq!(b.name(), "pci-001a-ff-1f.7");
        for bad in [
            "",
            "0000--00--20.0",
            "0000--00--03.8",
            "0000--100--03.0",
            "x--00--03.0",
            "0000--00",
            "00000--00--03.0",
            "+0--00--03.0",
            "0000---00--03.0",
            "00-00-03.0",
            "00--03.0",
            "00-00--03",
            "00-00--03.0.0",
            "0000:00--03.0",
            "access",
        ] {
            assert_eq!(PciAddr::parse(bad), None, "{bad}");
        }
        assert_eq!(PciAddr::from_path("/scheme/pci/0000--00--03.0/channel"), Some(a));
        assert_eq!(PciAddr::from_path("pci:0000--00--03.0/channel"), Some(a));
        assert_eq!(PciAddr::from_path("pci:/0000--00--03.0/channel"), Some(a));
        assert_eq!(PciAddr::from_path("pci:0000:00:03.0/channel"), Some(a));
        assert_eq!(PciAddr::from_path("/scheme/pci/00-00--03.0/channel"), Some(a));
        assert_eq!(PciAddr::from_path("pci:channel"), None);
        assert_eq!(PciAddr::from_path(""), None);
        assert_eq!(
            b.access_metadata(0x10),
            (0x1a << 28) | (0xff << 20) | (0x1f << 15) | (7 << 12) | 0x10
        );
    }

    #[test]
    fn channels_open_by_the_entry_as_listed() {
        for (listed, addr) in [
            ("00-00--03.0", PciAddr { segment: 0, bus: 0, device: 3, function: 0 }),
            ("0000--00--04.0", PciAddr { segment: 0, bus: 0, device: 4, function: 0 }),
            ("01-2a--1f.7", PciAddr { segment: 1, bus: 0x2a, device: 0x1f, function: 7 }),
        ] {
            let e = PciEntry::parse(listed).expect(listed);
            assert_eq!(e.addr, addr);
            assert_eq!(e.name, listed);
            assert_eq!(e.channel_path(), format!("/scheme/pci/{listed}/channel"));
        }
        assert_eq!(PciEntry::parse("access"), None);
        // Listed in either format, entries sort by address.
        let mut v: Vec<_> =
            ["0000--00--04.0", "00-00--03.0"].iter().filter_map(|n| PciEntry::parse(n)).collect();
        v.sort();
        assert_eq!(v[0].name, "00-00--03.0");
    }

    #[test]
    fn encodings() {
        assert_eq!(bar_mmap_offset(0, MemType::WriteBack), 0);
        assert_eq!(bar_mmap_offset(2, MemType::Uncacheable), (2 << 61) | (1 << 59));
        assert_eq!(bar_mmap_offset(1, MemType::WriteBack), 1 << 61);
        assert_eq!(bar_mmap_offset(5, MemType::WriteCombining), (5 << 61) | (2 << 59));
        assert_eq!(round_up_page(0), Some(0));
        assert_eq!(round_up_page(1), Some(4096));
        assert_eq!(round_up_page(4096), Some(4096));
        assert_eq!(round_up_page(usize::MAX), None);
        assert!(access_in_bar(0, 4));
        assert!(access_in_bar(252, 256));
        assert!(!access_in_bar(256, 256));
        assert!(!access_in_bar(2, 256));
        assert!(!access_in_bar(u32::MAX - 3, 256));
    }

    #[test]
    fn msi_and_irq_entries() {
        assert_eq!(msi_message(0, 16), Some(MsiMessage { address: 0xfee0_0000, data: 48 }));
        assert_eq!(msi_message(3, 100), Some(MsiMessage { address: 0xfee0_3000, data: 132 }));
        assert_eq!(msi_message(256, 16), None);
        assert_eq!(msi_message(0, 224), None);
        assert_eq!(parse_bsp(&[2, 0, 0, 0, 0, 0, 0, 0], 8), Some(2));
        assert_eq!(parse_bsp(&[2, 0, 0, 0], 4), Some(2));
        assert_eq!(parse_bsp(&[2, 0, 0, 0], 3), None);
        assert_eq!(parse_bsp(&[2, 0], 8), None);
        assert_eq!(parse_msi_irq("16"), Some(16));
        assert_eq!(parse_msi_irq("223"), Some(223));
        for bad in ["15", "0", "224", "255", "256", "", "+20", "bsp", "cpu-00"] {
            assert_eq!(parse_msi_irq(bad), None, "{bad}");
        }
    }
}
