//! `sandbox` in spawn specs, as the BEAM sends them: the program runs in namespaces of its
//! own (hostname, pid table, network), its status is its own, and a part that cannot be
//! set up is a spawn error at stage `sandbox`. Needs root (the helper's sandbox does).

use sluice_protocol::{ExitStatus, ReadOnly, SandboxSpec, Stage};

mod common;
use common::{read_all, spec, Beam};

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn a_sandboxed_program_sees_its_own_namespaces_and_keeps_its_status() {
    if !root() {
        return;
    }
    let h = Beam::start("off", 500);
    let mut s = spec(&[
        "sh",
        "-c",
        "hostname; ls /proc | grep -c '^[0-9]'; cat /sys/class/net/lo/operstate; exit 7",
    ]);
    s.sandbox = Some(SandboxSpec::default());
    let mut p = h.spawn(1, s);
    let out = String::from_utf8(read_all(p.stdout.take().unwrap())).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "sandbox", "{out}");
    assert!(lines[1].parse::<u32>().unwrap() < 10, "{out}");
    assert_eq!(p.channel.expect_exit(1), ExitStatus::Exited(7));

    // A signal that kills the program is the status the helper reports.
    let mut s = spec(&["sh", "-c", "kill -TERM $$"]);
    s.sandbox = Some(SandboxSpec::default());
    let p = h.spawn(2, s);
    assert_eq!(
        p.channel.expect_exit(2),
        ExitStatus::Signaled {
            signum: libc::SIGTERM,
            core: false
        }
    );
    assert!(h.stop().success());
}

#[test]
fn a_missing_writable_path_is_a_spawn_error_at_stage_sandbox() {
    if !root() {
        return;
    }
    let h = Beam::start("off", 500);
    let mut s = spec(&["touch", "/sluice-sandbox-ran"]);
    s.sandbox = Some(SandboxSpec {
        read_only: ReadOnly::Paths(vec![b"/usr".to_vec()]),
        writable: vec![b"/sluice-no-such-dir".to_vec()],
        ..SandboxSpec::default()
    });
    let ch = h.request(3, s);
    assert_eq!(
        ch.expect_spawn_error(),
        (3, "ENOENT".into(), Stage::Sandbox)
    );
    assert!(!std::path::Path::new("/sluice-sandbox-ran").exists());
    assert!(h.stop().success());
}
