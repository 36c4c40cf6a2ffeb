//! The command lines of both binaries, on `clap` (derive): [`PtnetdArgs`] for `ptnetd` (every
//! target; the host-only modes are compiled out on Redox) and [`PtnetHostArgs`] for
//! `ptnet-host` (host). Options take their value after a space or `=`; numbers may be grouped
//! with `_`; an option given twice takes the last value (so a script can append to a fixed
//! command line); `--help` lists every option with its default. A bad command line gets clap's
//! message naming the option and exit status 2 ([`clap::Error::exit`]).

use super::DriveOpts;
use crate::frame::{mac_string, PEER_MAC};
use crate::selftest::MAX_FRAMES;
use clap::{ArgGroup, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::time::Duration;

/// Default bound of a self test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest accepted `--timeout`, in seconds.
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// A number in `lo..=hi`; digits may be grouped with `_`.
fn number(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    s.replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| format!("expected a number in {lo}..={hi}"))
}

/// `--selftest N`: 1..=[`MAX_FRAMES`].
fn selftest_frames(s: &str) -> Result<u64, String> {
    number(s, 1, MAX_FRAMES)
}

/// A positive number of seconds (decimals allowed), at most a day.
fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| *x > 0.0 && *x <= MAX_TIMEOUT_SECS)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("expected seconds, more than 0 and at most {MAX_TIMEOUT_SECS}"))
}

/// Parses `args` (program name first) with `cmd` into `T`; errors carry clap's message.
fn parse_with<T: FromArgMatches, I, A>(cmd: clap::Command, args: I) -> Result<T, clap::Error>
where
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let mut cmd = cmd;
    let m = cmd.try_get_matches_from_mut(args)?;
    T::from_arg_matches(&m).map_err(|e| e.format(&mut cmd))
}

// ------------------------------------------------------------------------------------------
// ptnetd

/// `ptnetd`'s command line. On the host: the main job on the embedded model by default,
/// `--selftest N` against an embedded reflector, `--linux` on a real NIC in a Linux guest. On
/// Redox (started by pcid-spawner for 1b36:000d): attach, then `--selftest N` if given.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(name = "ptnetd", version, args_override_self = true, allow_negative_numbers = true)]
#[command(group(ArgGroup::new("mode").args(MODES).multiple(true)))]
pub struct PtnetdArgs {
    /// The zero-copy self test: N frames through TX ring 0 in netmap mode, each expected back
    /// intact and in order on the first RX ring (a reflecting port, or a switch with a reflect
    /// endpoint at the peer address below; other frames are counted as foreign) [default: off]
    #[arg(long, value_name = "N", value_parser = selftest_frames)]
    pub selftest: Option<u64>,
    /// Give up the self test after S seconds
    #[arg(long, value_name = "S", value_parser = seconds, default_value = "120", requires = "selftest")]
    pub timeout: Duration,
    /// Ask for the 12-byte virtio-net header (with --selftest or --linux) [default: off]
    #[arg(long, requires = "mode")]
    pub vnet: bool,
    /// Drive a real ptnet NIC from a Linux guest (root): sysfs config space and BARs, DMA from
    /// /proc/self/pagemap, polling; attach, log the start line, run --selftest if given, shut
    /// down [default: off]
    #[cfg(not(target_os = "redox"))]
    #[arg(long, conflicts_with_all = ["driver_demo", "slots", "pcap"])]
    pub linux: bool,
    /// With --linux: the ptnet function, e.g. 0000:00:03.0 [default: the first 1b36:000d with
    /// a network class under /sys/bus/pci/devices]
    #[cfg(not(target_os = "redox"))]
    #[arg(long, value_name = "BDF", requires = "linux", value_parser = pci_address)]
    pub pci: Option<String>,
    /// Main job: MiB of the stack-mode TCP transfer (smoltcp on each VM's network scheme)
    #[cfg(not(target_os = "redox"))]
    #[arg(long, value_name = "N", value_parser = mib, default_value = "64", conflicts_with_all = NOT_MAIN)]
    pub tcp_mib: u64,
    /// Main job: 60-byte frames pkt-gen sends zero-copy from VM A to VM B over netmap
    #[cfg(not(target_os = "redox"))]
    #[arg(long, value_name = "N", value_parser = main_frames, default_value = "10000000", conflicts_with_all = NOT_MAIN)]
    pub zc_frames: u64,
    /// Main job: MiB of the TCP transfer during which a zero-copy client takes a ring and
    /// gives it back
    #[cfg(not(target_os = "redox"))]
    #[arg(long, value_name = "N", value_parser = mib, default_value = "16", conflicts_with_all = NOT_MAIN)]
    pub switch_mib: u64,
    /// Main job: print one JSON object on stdout instead of the report [default: off]
    #[cfg(not(target_os = "redox"))]
    #[arg(long, conflicts_with_all = NOT_MAIN)]
    pub json: bool,
    /// The driver-level demo instead of the main job: VM1 sends --frames frames of mixed sizes
    /// to VM2 through the driver's copy path, no schemes [default: off]
    #[cfg(not(target_os = "redox"))]
    #[arg(long, conflicts_with = "selftest")]
    pub driver_demo: bool,
    /// Driver demo: frames to send
    #[cfg(not(target_os = "redox"))]
    #[arg(long, value_name = "N", value_parser = main_frames, default_value = "200000", requires = "driver_demo")]
    pub frames: u64,
    /// Driver demo and embedded self test: slots per ring
    #[cfg(not(target_os = "redox"))]
    #[arg(long, value_name = "N", value_parser = main_slots, default_value = "1024")]
    pub slots: u32,
    /// Main job: record the frames crossing VM A's switch port (all stack-mode traffic, the
    /// first 10000 zero-copy frames) into a pcap file; driver demo: the receiving port
    /// [default: none]
    #[cfg(not(target_os = "redox"))]
    #[arg(long, value_name = "PATH", conflicts_with = "selftest")]
    pub pcap: Option<std::path::PathBuf>,
}

#[cfg(not(target_os = "redox"))]
const MODES: [&str; 2] = ["selftest", "linux"];
/// What the main job's own options cannot be given with.
#[cfg(not(target_os = "redox"))]
const NOT_MAIN: [&str; 3] = ["selftest", "linux", "driver_demo"];
#[cfg(target_os = "redox")]
const MODES: [&str; 1] = ["selftest"];

/// What `ptnetd` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The main job: the whole system on the embedded model.
    #[cfg(not(target_os = "redox"))]
    System {
        /// Sizes and the pcap file.
        cfg: super::system::SystemConfig,
        /// JSON instead of the report.
        json: bool,
    },
    /// The driver-level demo on the embedded model.
    #[cfg(not(target_os = "redox"))]
    Demo(super::demo::DemoConfig),
    /// The self test against an embedded reflector.
    #[cfg(not(target_os = "redox"))]
    ModelSelftest {
        /// Slots per ring of the model port.
        slots: u32,
        /// Frames (`selftest`), vnet header, timeout.
        opts: DriveOpts,
    },
    /// The driver on a real NIC in a Linux guest.
    #[cfg(not(target_os = "redox"))]
    Linux {
        /// The NIC's PCI address, if given.
        pci: Option<String>,
        /// Self test, vnet header, timeout.
        opts: DriveOpts,
    },
    /// The Redox daemon.
    #[cfg(target_os = "redox")]
    Daemon(DriveOpts),
}

impl PtnetdArgs {
    /// The command with the figures only known at run time in its help.
    pub fn command_with_help() -> clap::Command {
        let what = if cfg!(target_os = "redox") {
            "the netmap ptnet driver for Redox (started by pcid-spawner for 1b36:000d)"
        } else {
            "the netmap ptnet driver for Redox, with an emulated ptnet hypervisor"
        };
        Self::command()
            .about(what)
            .long_about(format!(
                "{what}\n\n{}",
                if cfg!(target_os = "redox") {
                    "Attaches to the ptnet NIC of PCID_CLIENT_CHANNEL and its memdev, logs the \
                     start line, registers network.<pci>_ptnet and netmap.<pci>_ptnet, enters \
                     the null namespace, signals readiness and serves both schemes until the \
                     device goes away. With --selftest it runs the self test instead and shuts \
                     the device down."
                } else {
                    "By default the main job runs on the embedded device model: two VMs \
                     (52:54:00:12:34:56 at 00:03.0, 52:54:00:12:34:57 at 00:04.0), each a ptnetd \
                     instance serving its network.* and netmap.* schemes, on ports of one \
                     VALE-like switch. Three phases through the scheme code Redox runs: a TCP \
                     transfer between two smoltcp stacks on the network schemes (SHA-256 \
                     checked), pkt-gen zero-copy over the netmap schemes (every frame counted: \
                     received + dropped by the switch = sent), and a TCP transfer during which a \
                     zero-copy client takes a ring from the stack and gives it back. It shows \
                     progress on stderr and ends with a report (or --json): per phase the rate, \
                     kicks, interrupts and copies per packet, PASS/FAIL."
                }
            ))
            .after_help(format!(
                "Self-test frames go to the peer {peer}; --selftest takes 1..={MAX_FRAMES} \
                 frames.\nExit status: 0 on success, 1 if anything was lost, corrupted or \
                 failed, 2 on a usage error. Logs go to stderr (RUST_LOG=debug for more, \
                 default info).",
                peer = mac_string(PEER_MAC),
            ))
    }

    /// Parses `args` (program name first).
    pub fn try_parse_args<I, A>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString> + Clone,
    {
        parse_with(Self::command_with_help(), args)
    }

    /// The process's command line; prints clap's message and exits (2 on a usage error, 0 for
    /// `--help` and `--version`) if it is not one.
    pub fn from_env() -> Self {
        Self::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    fn drive_opts(&self) -> DriveOpts {
        DriveOpts { selftest: self.selftest, vnet: self.vnet, timeout: self.timeout }
    }

    /// The mode the options ask for.
    pub fn mode(&self) -> Mode {
        #[cfg(target_os = "redox")]
        return Mode::Daemon(self.drive_opts());
        #[cfg(not(target_os = "redox"))]
        {
            let opts = self.drive_opts();
            if self.linux {
                Mode::Linux { pci: self.pci.clone(), opts }
            } else if self.selftest.is_some() {
                Mode::ModelSelftest { slots: self.slots, opts }
            } else if self.driver_demo {
                Mode::Demo(super::demo::DemoConfig {
                    frames: self.frames,
                    slots: self.slots,
                    pcap: self.pcap.clone(),
                    ..Default::default()
                })
            } else {
                Mode::System {
                    cfg: super::system::SystemConfig {
                        tcp_bytes: (self.tcp_mib << 20) as usize,
                        zc_frames: self.zc_frames,
                        switch_bytes: (self.switch_mib << 20) as usize,
                        pcap: self.pcap.clone(),
                        ..Default::default()
                    },
                    json: self.json,
                }
            }
        }
    }
}

/// `--tcp-mib`, `--switch-mib`: 1..=4096 MiB.
#[cfg(not(target_os = "redox"))]
fn mib(s: &str) -> Result<u64, String> {
    number(s, 1, 4096)
}

/// `--frames N`: at least 1.
#[cfg(not(target_os = "redox"))]
fn main_frames(s: &str) -> Result<u64, String> {
    number(s, 1, u64::MAX)
}

/// `--slots N`: the main job's [`SLOTS_RANGE`](super::demo::SLOTS_RANGE).
#[cfg(not(target_os = "redox"))]
fn main_slots(s: &str) -> Result<u32, String> {
    let r = super::demo::SLOTS_RANGE;
    number(s, *r.start() as u64, *r.end() as u64).map(|n| n as u32)
}

/// `--pci`: a PCI address (checked with the Linux platform's parser where it exists).
#[cfg(not(target_os = "redox"))]
fn pci_address(s: &str) -> Result<String, String> {
    #[cfg(target_os = "linux")]
    let ok = crate::platform::linux::Bdf::parse(s).is_some();
    #[cfg(not(target_os = "linux"))]
    let ok = !s.is_empty();
    ok.then(|| s.to_string()).ok_or_else(|| "expected a PCI address DDDD:BB:DD.F".into())
}

// ------------------------------------------------------------------------------------------
// ptnet-host

#[cfg(not(target_os = "redox"))]
pub use host::{Backend, PtnetHostArgs};

#[cfg(not(target_os = "redox"))]
mod host {
    use super::{number, parse_with};
    use crate::frame::mac_string;
    use crate::model::vfio::host::{
        BackendKind, HostConfig, MAX_RINGS_PER_DIR, MAX_VMS, REFLECT_MAC, SLOTS_RANGE, SOURCE_MAC,
    };
    use clap::{CommandFactory, Parser, ValueEnum};
    use std::ffi::OsString;
    use std::path::PathBuf;

    /// How the VMs' ports are connected (`--backend`).
    #[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Backend {
        /// Each VM's port sends its frames back to it (own region)
        Reflector,
        /// All VM ports on one VALE-like learning switch (own region per VM, the switch copies)
        Switch,
        /// Exactly 2 VMs joined by a netmap pipe (one shared region)
        Pipe,
    }

    impl From<Backend> for BackendKind {
        fn from(b: Backend) -> Self {
            match b {
                Backend::Reflector => Self::Reflector,
                Backend::Switch => Self::Switch,
                Backend::Pipe => Self::Pipe,
            }
        }
    }

    fn vms(s: &str) -> Result<u32, String> {
        number(s, 1, MAX_VMS.into()).map(|n| n as u32)
    }

    fn rings(s: &str) -> Result<u32, String> {
        number(s, 1, MAX_RINGS_PER_DIR.into()).map(|n| n as u32)
    }

    fn slots(s: &str) -> Result<u32, String> {
        number(s, *SLOTS_RANGE.start() as u64, *SLOTS_RANGE.end() as u64).map(|n| n as u32)
    }

    fn pps(s: &str) -> Result<u64, String> {
        number(s, 0, u64::MAX)
    }

    fn non_empty(s: &str) -> Result<PathBuf, String> {
        (!s.is_empty()).then(|| PathBuf::from(s)).ok_or_else(|| "expected a path".into())
    }

    /// `ptnet-host`'s command line: netmap ptnet NICs for QEMU VMs, served over vfio-user.
    #[derive(Parser, Debug, Clone, PartialEq, Eq)]
    #[command(
        name = "ptnet-host",
        version,
        args_override_self = true,
        allow_negative_numbers = true
    )]
    pub struct PtnetHostArgs {
        /// Where the sockets are created (made if missing)
        #[arg(long, value_name = "DIR", value_parser = non_empty)]
        pub socket_dir: PathBuf,
        /// Number of VMs
        #[arg(long, value_name = "N", value_parser = vms)]
        pub vms: u32,
        /// How the VMs' ports are connected
        #[arg(long, value_name = "KIND", value_enum)]
        pub backend: Backend,
        /// TX and RX rings per NIC
        #[arg(long, value_name = "N", value_parser = rings, default_value = "1")]
        pub rings: u32,
        /// Slots per ring
        #[arg(long, value_name = "N", value_parser = slots, default_value = "256")]
        pub slots: u32,
        /// Switch only: a host endpoint counting the frames it receives [default: off]
        #[arg(long)]
        pub sink: bool,
        /// Switch only: the host endpoint sends N broadcast UDP frames per second (0 = as fast
        /// as possible) from the source address below [default: no source]
        #[arg(long, value_name = "N", value_parser = pps)]
        pub source_pps: Option<u64>,
        /// Switch only: a host endpoint at the reflect address below that sends every frame
        /// addressed to it back to its sender, addresses swapped (the peer of the guest's
        /// 'ptnetd --selftest'); combines with --sink and --source-pps [default: off]
        #[arg(long)]
        pub reflect: bool,
        /// Switch only: the host endpoints use 12-byte virtio-net headers [default: off]
        #[arg(long)]
        pub vnet: bool,
        /// Record VM 0's port into a pcap file [default: none]
        #[arg(long, value_name = "FILE", value_parser = non_empty)]
        pub pcap: Option<PathBuf>,
    }

    impl PtnetHostArgs {
        /// The command with the sockets, QEMU options and addresses in its help.
        pub fn command_with_help() -> clap::Command {
            Self::command()
                .about("netmap ptnet NICs for QEMU VMs, served over vfio-user")
                .after_help(format!(
                    "\
For VM k (0..N) it serves two PCI functions, each on its own UNIX socket:
  DIR/vm{{k}}-ptnet.sock    the ptnet NIC (1b36:000d)
  DIR/vm{{k}}-memdev.sock   its ptnetmap-memdev (1b36:000c), BAR1 = the netmap region
Attach both to VM k:
  -object memory-backend-memfd,id=mem,size=512M,share=on -machine q35,memory-backend=mem -m 512
  -device '{{\"driver\":\"vfio-user-pci\",\"socket\":{{\"path\":\"DIR/vm0-ptnet.sock\",\"type\":\"unix\"}}}}'
  -device '{{\"driver\":\"vfio-user-pci\",\"socket\":{{\"path\":\"DIR/vm0-memdev.sock\",\"type\":\"unix\"}}}}'

VM k has MAC 52:54:00:12:34:(56+k). The host source sends from {source}; the reflect
endpoint is {reflect}. A VM may disconnect and a new one connect to the same sockets; the host
runs until SIGINT or SIGTERM, then logs the counters of the host endpoints and the switch, and
removes its sockets. RUST_LOG sets the log level (default info).
Exit status: 0 after SIGINT/SIGTERM, 1 when the host cannot start, 2 on a usage error.",
                    source = mac_string(SOURCE_MAC),
                    reflect = mac_string(REFLECT_MAC),
                ))
        }

        /// Parses `args` (program name first), then checks the combinations
        /// ([`HostConfig::validate`]), reported as clap errors too.
        pub fn try_parse_args<I, A>(args: I) -> Result<Self, clap::Error>
        where
            I: IntoIterator<Item = A>,
            A: Into<OsString> + Clone,
        {
            let a: Self = parse_with(Self::command_with_help(), args)?;
            a.config().validate().map_err(|e| {
                Self::command_with_help().error(clap::error::ErrorKind::ArgumentConflict, e)
            })?;
            Ok(a)
        }

        /// The process's command line; prints clap's message and exits (2 on a usage error)
        /// if it is not one.
        pub fn from_env() -> Self {
            Self::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
        }

        /// The host's configuration.
        pub fn config(&self) -> HostConfig {
            let mut c = HostConfig::new(&self.socket_dir, self.vms, self.backend.into());
            c.rings = self.rings;
            c.slots = self.slots;
            c.vnet = self.vnet;
            c.pcap = self.pcap.clone();
            c.source_pps = self.source_pps;
            c.sink = self.sink;
            c.reflect = self.reflect;
            c
        }
    }
}

#[cfg(all(test, not(target_os = "redox")))]
mod tests;
