//! The layering, checked on the sources: abi → shm → ring/csb/nm/frame/inet (shared, low) →
//! platform → driver → selftest / scheme → client on the guest side; `model` on the host side, which never uses the
//! guest's modules; `app` above both. Each file under a rule's folder may name, through
//! `crate::`, `ptnetd::` or a chain of `super::` that leaves its module tree, only the crate
//! modules the rule allows. `platform/sim.rs` is the one tie between the sides (the driver's
//! platform on the model); applications (`app`, the binaries) are not restricted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Shared low modules: both sides may use them.
const LOW: &[&str] = &["abi", "shm", "ring", "csb", "nm", "frame", "inet", "notify"];

/// (folder or file under `src/`, extra modules allowed besides [`LOW`]). The first rule that
/// matches a file applies.
const RULES: &[(&str, &[&str])] = &[
    ("model", &["model"]),
    ("abi", &[]),
    ("shm.rs", &[]),
    ("ring.rs", &[]),
    ("csb.rs", &[]),
    ("nm.rs", &[]),
    ("frame.rs", &[]),
    ("inet.rs", &[]),
    ("notify.rs", &[]),
    ("logger.rs", &[]),
    ("platform/sim.rs", &["platform", "model"]),
    ("platform", &["platform"]),
    ("driver", &["platform", "driver", "logger"]),
    ("selftest.rs", &["platform", "driver", "selftest", "logger"]),
    ("scheme", &["platform", "driver", "scheme"]),
    // The client library's host `Os` is the in-process kernel's client side.
    ("client", &["client", "scheme", "platform"]),
];

/// The module path of a source file relative to `src/` (`model/vfio/host.rs` → model, vfio,
/// host; `model/mod.rs` → model).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// `src` without comments (line, doc and block comments) and string literals.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let (mut out, mut i) = (String::with_capacity(src.len()), 0);
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first segments a path names right after a crate root at the start of `rest`: `x` for
/// `x::…`, each item's first segment for `{a::b, c}`, `*` for a glob.
fn first_segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let (mut depth, mut item, mut out) = (0, String::new(), Vec::new());
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(first_segments(&std::mem::take(&mut item)));
                    continue;
                }
                _ => {}
            }
            if depth == 0 || c != '{' {
                item.push(c);
            }
        }
        out.extend(first_segments(&item));
        return out;
    }
    if rest.starts_with('*') {
        return vec!["*".into()];
    }
    let id = ident_at(rest);
    if id.is_empty() || id == "self" {
        vec![]
    } else {
        vec![id.to_string()]
    }
}

/// The crate modules `src` (the file at module path `at`) names: through `crate::`,
/// `ptnetd::`, or `super::` chains that climb to the crate root (inline `mod x { … }` blocks
/// count as one level each).
fn crate_modules(src: &str, at: &[String]) -> BTreeSet<String> {
    let s = strip(src);
    let bytes = s.as_bytes();
    let boundary = |i: usize| {
        i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':')
    };
    let (mut found, mut depth, mut inline) = (BTreeSet::new(), 0usize, Vec::<usize>::new());
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let root_len = ["crate::", "ptnetd::"]
            .iter()
            .find(|r| rest.starts_with(**r) && boundary(i))
            .map(|r| r.len());
        if let Some(n) = root_len {
            found.extend(first_segments(&rest[n..]));
            i += n;
            continue;
        }
        if rest.starts_with("super::") && boundary(i) {
            let (mut ups, mut j) = (0usize, i);
            while s[j..].starts_with("super::") {
                ups += 1;
                j += "super::".len();
            }
            // `super` from the innermost module names its parent.
            let here = at.len() + inline.len();
            if ups >= here {
                found.extend(first_segments(&s[j..]));
            } else if here - ups <= at.len() {
                found.insert(at[0].clone()); // still inside the file's top-level module
            }
            i = j;
            continue;
        }
        if rest.starts_with("mod ") && boundary(i) {
            let after = rest[4..].trim_start();
            let name = ident_at(after);
            if !name.is_empty() && after[name.len()..].trim_start().starts_with('{') {
                inline.push(depth + 1);
            }
        }
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn rule_for(rel: &Path) -> Option<&'static [&'static str]> {
    RULES.iter().find(|(prefix, _)| rel.starts_with(prefix)).map(|(_, extra)| *extra)
}

/// Every file under a rule with the modules it names against its rule.
fn violations() -> (Vec<String>, usize, BTreeSet<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let (mut bad, mut model_files, mut model_uses) = (Vec::new(), 0, BTreeSet::new());
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src").to_path_buf();
        let Some(extra) = rule_for(&rel) else { continue };
        let text = std::fs::read_to_string(&f).expect("read source");
        let used = crate_modules(&text, &module_path(&rel));
        if rel.starts_with("model") {
            // A #[path] module would be scanned under another rule, or not at all.
            assert!(!strip(&text).contains("#[path"), "{}: #[path] in the model", rel.display());
            model_files += 1;
            model_uses.extend(used.iter().cloned());
        }
        let own = module_path(&rel).first().cloned().unwrap_or_default();
        for m in used {
            if m != own && !LOW.contains(&m.as_str()) && !extra.contains(&m.as_str()) {
                bad.push(format!("{} uses crate::{m}", rel.display()));
            }
        }
    }
    (bad, model_files, model_uses)
}

#[test]
fn the_host_side_never_uses_the_guest_side_and_each_layer_only_lower_ones() {
    let (bad, model_files, model_uses) = violations();
    assert!(bad.is_empty(), "layering broken:\n  {}", bad.join("\n  "));
    assert!(model_files >= 19, "the scan found the model's files: {model_files}");
    for m in ["abi", "shm", "frame", "model"] {
        assert!(model_uses.contains(m), "the scan sees what the model does use: {model_uses:?}");
    }
}

#[test]
fn the_scanner_sees_every_way_of_naming_a_module() {
    let at = |p: &str| module_path(Path::new(p));
    let uses = |src: &str, p: &str| crate_modules(src, &at(p)).into_iter().collect::<Vec<_>>();
    let f = "model/demo.rs";
    assert_eq!(uses("use crate::driver::copy::CopyError;", f), ["driver"]);
    assert_eq!(uses("use crate::{abi, selftest::{fold, PEER_MAC}};", f), ["abi", "selftest"]);
    assert_eq!(uses("let x = crate::platform::sim::SimPlatform::new();", f), ["platform"]);
    assert_eq!(uses("use ptnetd::app::demo;", f), ["app"]);
    assert_eq!(uses("use super::super::driver::Ptnet;", f), ["driver"]);
    assert_eq!(uses("use super::super::super::selftest;", "model/vfio/host.rs"), ["selftest"]);
    assert_eq!(uses("use super::super::port::NmPort;", "model/vfio/host.rs"), ["model"]);
    assert_eq!(uses("use super::port::NmPort;", f), ["model"]);
    assert_eq!(uses("use crate::*;", f), ["*"]);
    assert_eq!(uses("use crate::{\n    abi::regs,\n    driver,\n};", f), ["abi", "driver"]);
    assert!(uses("// crate::driver\n/* crate::selftest */ let s = \"crate::app\";", f).is_empty());
    assert!(uses("use self::port; use mycrate::driver;", f).is_empty());
    let inline = "mod tests {\n    use super::*;\n    mod deeper { use super::super::Guest; }\n}\n";
    assert_eq!(uses(inline, "model/script.rs"), ["model"], "inline modules are one level each");
    assert_eq!(uses(inline, "frame.rs"), ["frame"], "inside frame: not the crate root");
    let out = "mod tests { fn f() {} }\nuse super::driver;";
    assert_eq!(uses(out, "model/mod.rs"), ["driver"], "after the inline module closed");
    assert_eq!(module_path(Path::new("model/mod.rs")), ["model"]);
}
