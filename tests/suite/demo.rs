//! `demo` runs every job kind against the bundled simulator and prints their outcomes.

use std::process::Command;

#[test]
fn demo_runs_every_job_kind_and_prints_outcomes() {
    let out = Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |kind: &str, needle: &str| {
        stdout
            .lines()
            .filter(|l| l.contains(kind))
            .any(|l| l.contains(needle))
    };
    assert!(row("remote_mirror", "sync succeeded"), "{stdout}");
    assert!(row("remote_mirror", "CH.004404"), "{stdout}");
    assert!(row("purge_recycle_bin", "items purged"), "{stdout}");
    assert!(row("storage_snapshot", "bytes in total"), "{stdout}");
    assert!(row("audit_mirror", "audit records archived"), "{stdout}");
    assert!(
        row(
            "swr_image_sync",
            "1 synced, 1 already there, 1 failed [\"v1.1.0\"]"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("7 jobs in"), "{stdout}");
    // The SWR share audit: two snapshots, then the changes between them.
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("swr_share_audit succeeded"))
            .count(),
        2,
        "{stdout}"
    );
    for (change, account) in [
        ("added", "partner-q"),
        ("removed", "partner-x"),
        ("permission_widened", "partner-x"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(change) && l.contains(account)),
            "{change} {account}: {stdout}"
        );
    }
}
