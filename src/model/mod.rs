//! The emulated ptnet hypervisor (device model).
