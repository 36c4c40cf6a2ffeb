//! The `network` scheme (scheme-spec `network.md`) through redox-scheme's own request decoding
//! and dispatch, driven by the in-process transport, with the polling fallback off.

mod skit;

use skit::*;
use std::time::Duration;
use syscall::error::*;
use syscall::flag::{EventFlags, MapFlags, MODE_FILE, O_NONBLOCK, O_RDWR};

fn errno<T: std::fmt::Debug>(r: syscall::error::Result<T>) -> i32 {
    r.expect_err("expected an error").errno
}

/// N2: who may open what.
#[test]
fn open_rules() {
    let (a, _b) = pair(1, 64, 2048);
    assert_eq!(errno(a.k.open(NET, "", O_RDWR, 1000)), EACCES, "non-root");
    for bad in ["x", "mac/x", "/mac", "..", "mac\0", " "] {
        assert_eq!(errno(a.k.open(NET, bad, O_RDWR, 0)), EINVAL, "{bad:?}");
    }
    let d = a.k.open(NET, "", O_RDWR, 0).unwrap();
    assert_eq!(errno(a.k.openat(NET, d, "mac", 0, 0)), EACCES, "openat relative to a data handle");
    let d2 = a.k.open(NET, "", O_RDWR, 0).unwrap();
    assert_ne!(d, d2, "handle ids are not reused");
    assert_eq!(errno(a.k.read(NET, 9999, &mut [0; 6], 0, 0)), EBADF);
}

/// N3: the MAC handle.
#[test]
fn mac_reads_six_raw_bytes_with_clamped_offsets() {
    let (a, _b) = pair(1, 64, 2048);
    let m = a.k.open(NET, "mac", 0, 0).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(a.k.read(NET, m, &mut buf, 0, 0).unwrap(), 6);
    assert_eq!(buf[..6], mac(1));
    assert_eq!(a.k.read(NET, m, &mut buf, 4, 0).unwrap(), 2);
    assert_eq!(buf[..2], mac(1)[4..]);
    assert_eq!(a.k.read(NET, m, &mut buf, 6, 0).unwrap(), 0);
    assert_eq!(a.k.read(NET, m, &mut buf, u64::MAX, 0).unwrap(), 0);
    assert_eq!(a.k.read(NET, m, &mut buf[..3], 0, 0).unwrap(), 3);
    let st = a.k.fstat(NET, m).unwrap();
    assert_eq!((st.st_mode, st.st_size), (MODE_FILE | 0o400, 6));
    assert_eq!(a.k.fsize(NET, m).unwrap(), 6);
    assert_eq!(errno(a.k.write(NET, m, &[0; 6], 0)), EBADF);
}

/// N4, N5: one frame per call, padding, truncation, EAGAIN, limits.
#[test]
fn frames_cross_the_pipe_one_per_call() {
    let (a, b) = pair(1, 256, 2048);
    let da = a.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    let mut buf = vec![0u8; 2048];
    assert_eq!(errno(b.k.read(NET, db, &mut buf, 0, O_NONBLOCK)), EAGAIN, "empty, non-blocking");

    let arp = frame(1, 2, 0, 42);
    assert_eq!(
        a.k.write(NET, da, &arp, O_NONBLOCK).unwrap(),
        42,
        "full length, not the padded one"
    );
    let sizes = [60usize, 61, 1000, 1514];
    for (k, &len) in sizes.iter().enumerate() {
        let f = frame(1, 2, k as u64 + 1, len);
        assert_eq!(a.k.write(NET, da, &f, O_NONBLOCK).unwrap(), len);
    }
    a.k.fsync(NET, da).unwrap();

    let n = wait_read(&b, db, &mut buf);
    assert_eq!(n, 60, "ARP padded to 60");
    assert_eq!(buf[..42], arp[..]);
    assert!(buf[42..60].iter().all(|&x| x == 0), "zero padding");
    for (k, &len) in sizes.iter().enumerate() {
        let n = wait_read(&b, db, &mut buf);
        assert_eq!(buf[..n], frame(1, 2, k as u64 + 1, len)[..], "frame {k}");
    }
    assert_eq!(errno(b.k.read(NET, db, &mut buf, 0, O_NONBLOCK)), EAGAIN);

    // A short buffer gets the frame truncated and the rest discarded.
    a.k.write(NET, da, &frame(1, 2, 7, 200), 0).unwrap();
    a.k.write(NET, da, &frame(1, 2, 8, 100), 0).unwrap();
    a.k.fsync(NET, da).unwrap();
    let mut small = [0u8; 20];
    let n = wait_read(&b, db, &mut small);
    assert_eq!((n, &small[..]), (20, &frame(1, 2, 7, 200)[..20]));
    let n = wait_read(&b, db, &mut buf);
    assert_eq!(buf[..n], frame(1, 2, 8, 100)[..], "the next read gets the next frame");

    assert_eq!(errno(a.k.write(NET, da, &[0u8; 13], 0)), EINVAL);
    assert_eq!(errno(a.k.write(NET, da, &vec![0u8; 1515], 0)), EMSGSIZE);
    assert_eq!(errno(a.k.call(NET, da, &mut [0u8; 8], &[1])), EOPNOTSUPP);
    assert_eq!(errno(a.k.mmap(NET, da, 0, 4096, MapFlags::MAP_SHARED)), EOPNOTSUPP);
}

fn wait_read(v: &Vm1, fd: usize, buf: &mut [u8]) -> usize {
    // A blocking read: parked by the daemon until a frame arrives (no polling: a lost wake-up
    // fails here after T).
    v.k.read(NET, fd, buf, 0, 0).expect("blocking read")
}

/// N4 3: a blocking read is parked and answered by the next frame; a cancelled one gets EINTR.
/// Over IPC, and inline (the read runs on the caller's thread, is parked there, and the frame's
/// arrival answers it from whichever thread ends the next batch).
#[test]
fn blocking_read_is_parked_then_answered_or_cancelled() {
    for t in [ptnetd::scheme::host::Transport::Ipc, ptnetd::scheme::host::Transport::Inline] {
        parked_read_answered_or_cancelled(pair_on(true, t, 1, 64, 2048));
    }
}

fn parked_read_answered_or_cancelled((a, b): (Vm1, Vm1)) {
    let da = a.k.open(NET, "", O_RDWR, 0).unwrap();
    let db = b.k.open(NET, "", O_RDWR, 0).unwrap();
    let mut buf = vec![0u8; 1514];
    let p = b.k.read_async(NET, db, &mut buf, 0, 0);
    assert!(b.k.still_pending(&p, Duration::from_millis(50)).is_none(), "parked, not answered");
    assert_eq!(b.k.snapshot().parked, 1);
    let f = frame(1, 2, 42, 300);
    a.k.write(NET, da, &f, 0).unwrap(); // end of batch publishes it
    assert_eq!(b.k.wait(p).unwrap(), 300);
    assert_eq!(buf[..300], f[..]);

    let mut buf2 = vec![0u8; 64];
    let p = b.k.read_async(NET, db, &mut buf2, 0, 0);
    assert!(b.k.still_pending(&p, Duration::from_millis(20)).is_none());
    b.k.cancel(&p);
    assert_eq!(errno(b.k.wait(p)), EINTR);
    assert_eq!(b.k.snapshot().parked, 0);
}

/// N8: EVENT_READ is posted while frames are pending; fpath, fstat, fsync.
#[test]
fn read_events_fpath_fstat() {
    let (a, b) = pair(1, 64, 2048);
    let da = a.k.open(NET, "", O_RDWR, 0).unwrap();
    let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    assert_eq!(b.k.fevent(NET, db, EventFlags::EVENT_READ).unwrap(), EventFlags::empty());
    a.k.write(NET, da, &frame(1, 2, 1, 64), 0).unwrap();
    let got = b.k.wait_event(NET, db, EventFlags::EVENT_READ, T);
    assert_eq!(got, EventFlags::EVENT_READ, "posted while a frame is pending");
    assert_eq!(b.k.fevent(NET, db, EventFlags::EVENT_READ).unwrap(), EventFlags::EVENT_READ);
    let mut buf = [0u8; 64];
    assert_eq!(b.k.read(NET, db, &mut buf, 0, O_NONBLOCK).unwrap(), 64);

    let mut p = [0u8; 128];
    let n = a.k.fpath(NET, da, &mut p).unwrap();
    let name = a.k.name().to_string();
    assert_eq!(std::str::from_utf8(&p[..n]).unwrap(), format!("/scheme/network.{name}_ptnet/"));
    let st = a.k.fstat(NET, da).unwrap();
    assert_eq!(st.st_mode, MODE_FILE | 0o700);
    assert_eq!(a.k.fsync(NET, da).unwrap(), 0);
}

/// N5: multi-slot frames (small buffers) and the publish policy: a burst costs few kicks.
#[test]
fn multi_slot_frames_and_batched_publication() {
    let (a, b) = pair(1, 512, 256);
    let da = a.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    let frames: Vec<Vec<u8>> =
        (0..100).map(|k| frame(1, 2, k, 60 + (k as usize * 97) % 1455)).collect();
    for f in &frames {
        assert_eq!(a.k.write(NET, da, f, O_NONBLOCK).unwrap(), f.len());
    }
    let mut buf = vec![0u8; 1514];
    for (k, f) in frames.iter().enumerate() {
        let n = wait_read(&b, db, &mut buf);
        assert_eq!(&buf[..n], &f[..], "frame {k}");
    }
    let s = a.k.snapshot();
    assert_eq!(s.scheme.frames_written, 100);
    assert_eq!(b.k.snapshot().scheme.frames_read, 100);
}

/// N4, N5 with the virtio-net header: zeroed in front on TX, stripped on RX, and a partial
/// checksum (NEEDS_CSUM, as a host with checksum offload delivers it) completed in software.
#[test]
fn vnet_header_stripped_and_partial_checksums_completed() {
    use ptnetd::abi::vnet::{VirtioNetHdr, F_NEEDS_CSUM};
    use ptnetd::client::host::HostOs;
    use ptnetd::client::NetmapPort;
    use ptnetd::inet::{internet_checksum, ones_complement_sum};
    let (a, b, _sw) = switch_pair(true);
    let da = a.k.open(NET, "", O_RDWR, 0).unwrap();
    let db = b.k.open(NET, "", O_RDWR | O_NONBLOCK, 0).unwrap();
    let f = frame(1, 2, 5, 300);
    a.k.write(NET, da, &f, 0).unwrap();
    let mut buf = vec![0u8; 1514];
    let n = b.k.read(NET, db, &mut buf, 0, 0).unwrap();
    assert_eq!(&buf[..n], &f[..], "header stripped, frame intact");

    // An IPv4/UDP frame whose checksum field holds only the pseudo-header sum.
    let payload = b"partial checksum completed by ptnetd";
    let udp_len = 8 + payload.len();
    let mut u = frame(1, 2, 0, 14 + 20 + udp_len);
    u[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut u[14..34];
    ip.copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    let c = internet_checksum(&u[14..34], 0);
    u[24..26].copy_from_slice(&c.to_be_bytes());
    u[34..36].copy_from_slice(&4000u16.to_be_bytes());
    u[36..38].copy_from_slice(&5000u16.to_be_bytes());
    u[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    u[42..].copy_from_slice(payload);
    let mut pseudo = [0u8; 12];
    pseudo[..8].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    pseudo[9] = 17;
    pseudo[10..].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let ps = ones_complement_sum(&pseudo, 0);
    u[40..42].copy_from_slice(&ps.to_be_bytes());
    let hdr =
        VirtioNetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 6, ..Default::default() };
    let mut wire = vec![0u8; 12];
    assert!(hdr.emit(&mut wire));
    wire.extend_from_slice(&u);
    {
        let os = HostOs::new(vec![&a.k]);
        let p = NetmapPort::open(&os, a.k.name(), "0/T").unwrap();
        assert_eq!(p.info().vnet_hdr_len, 12);
        assert!(p.tx_ring(0).unwrap().push(&wire).unwrap());
        p.txsync().unwrap();
    }
    let n = b.k.read(NET, db, &mut buf, 0, 0).unwrap();
    assert_eq!(n, u.len());
    assert_eq!(buf[..40], u[..40], "headers unchanged");
    assert_ne!(buf[40..42], u[40..42], "checksum filled in");
    assert_eq!(internet_checksum(&buf[34..n], u32::from(ps)), 0, "the UDP checksum verifies");
    assert_eq!(buf[42..n], u[42..], "payload intact");
}
