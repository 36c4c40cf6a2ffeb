//! Issue 7 §1: the README's two commands work in a fresh clone on the stable toolchain a fresh
//! machine has (RUSTUP_AUTO_INSTALL=0), and CI runs them literally before installing anything.

fn read(p: &str) -> String {
    std::fs::read_to_string(format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_toolchain_file_names_no_toolchain_a_fresh_machine_lacks() {
    let t = read("rust-toolchain.toml");
    let channel = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .map(|v| v.trim_start_matches([' ', '=']).trim().trim_matches('"').to_string());
    assert_eq!(channel.as_deref(), Some("stable"), "rust-toolchain.toml must say stable");
    assert!(!t.contains("components"), "components a fresh stable may lack");
}

#[test]
fn cargo_run_has_one_binary_to_choose() {
    let c = read("Cargo.toml");
    assert!(c.lines().any(|l| l.trim() == "default-run = \"ptnetd\""), "default-run missing");
}

#[test]
fn ci_runs_the_readme_commands_first_and_literally() {
    let ci = read(".ci/run");
    let readme = read("README.md");
    for cmd in ["cargo run --release", "cargo test --release"] {
        assert!(readme.contains(cmd), "README lacks {cmd}");
    }
    let pos = |needle: &str| ci.lines().position(|l| l.trim() == needle);
    let run = pos("cargo run --release").expect("CI runs `cargo run --release` as written");
    let test = ci
        .lines()
        .position(|l| l.trim().starts_with("cargo test --release 2>&1 | tee"))
        .expect("CI runs `cargo test --release`");
    let first_install = ci
        .lines()
        .position(|l| l.contains("apt-get") || l.contains("rustup toolchain install"))
        .expect("CI installs its extras");
    assert!(run < first_install && test < first_install, "README commands run before installs");
}
