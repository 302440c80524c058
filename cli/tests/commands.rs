//! Each command against stores the test makes: text and JSON output,
//! exit codes, and bad input (one clear line, non-zero exit, no panic).

mod common;

use std::path::Path;

use common::{make_store, one_line_error, payload, spool, stderr, stdout};
use serde_json::Value;

fn json(o: &std::process::Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("JSON output")
}

fn store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    make_store(&root);
    let r = root.to_str().expect("utf-8 path").to_string();
    (dir, r)
}

/// Every file under `root` with its bytes and mtime: commands other than
/// repair must change nothing.
fn image(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("ls") {
            let p = e.expect("entry").path();
            let m = std::fs::metadata(&p).expect("meta");
            if m.is_dir() {
                dirs.push(p);
            } else {
                out.push((
                    p.clone(),
                    std::fs::read(&p).expect("read"),
                    m.modified().expect("mtime"),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn stat_text_and_json() {
    let (_dir, r) = store();
    let before = image(Path::new(&r));
    let o = spool(&["stat", &r]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("(not open)"), "{text}");
    assert!(text.contains("channel \"orders\" (id 1)"), "{text}");
    assert!(text.contains("messages     2500 (seq 1..=2500)"), "{text}");
    assert!(
        text.contains("limits       max_msgs 100000, max_subscribers 1000"),
        "{text}"
    );
    assert!(text.contains("messages     none (next seq 1)"), "{text}");
    assert!(
        text.contains("billing") && text.contains("position  1200") && text.contains("lag 1300"),
        "{text}"
    );
    assert!(
        text.contains("queue group  workers") && text.contains("ack floor 3"),
        "{text}"
    );

    let v = json(&spool(&["stat", &r, "--json"]));
    assert_eq!(v["owner_pid"], Value::Null);
    let channels = v["channels"].as_array().expect("channels");
    let names: Vec<&str> = channels.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["bin", "empty", "orders"]);
    let orders = &channels[2];
    assert_eq!(
        (orders["first_seq"].as_u64(), orders["last_seq"].as_u64()),
        (Some(1), Some(2500))
    );
    assert!(orders["segments"].as_u64() >= Some(2));
    assert!(orders["disk_bytes"].as_u64() > Some(0));
    assert!(orders["oldest_ns"].as_u64() <= orders["newest_ns"].as_u64());
    assert_eq!(orders["limits"]["max_msgs"].as_u64(), Some(100_000));
    let subs = orders["subscribers"].as_array().expect("subscribers");
    assert_eq!(subs[0]["name"], "billing");
    assert_eq!(
        (subs[0]["position"].as_u64(), subs[0]["lag"].as_u64()),
        (Some(1200), Some(1300))
    );
    assert_eq!(subs[0]["state_bytes"].as_u64(), Some(5));
    assert_eq!(
        (subs[1]["kind"].as_str(), subs[1]["ack_floor"].as_u64()),
        (Some("queue_group"), Some(3))
    );
    assert!(v["disk_bytes"].as_u64() >= orders["disk_bytes"].as_u64());
    assert_eq!(image(Path::new(&r)), before, "stat wrote to the store");
}

#[test]
fn dump_formats_and_ranges() {
    let (_dir, r) = store();
    let o = spool(&["dump", &r, "orders", "--from", "1000", "--limit", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[0], (1000 + i).to_string());
        assert!(fields[1].ends_with('Z') && fields[1].starts_with("20"), "{line}");
        assert_eq!(fields[2].as_bytes(), payload("orders", 1000 + i as u64));
    }
    // The whole channel, as JSON lines.
    let o = spool(&["dump", &r, "orders", "--format", "json"]);
    let seqs: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json line")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, (1..=2500).collect::<Vec<_>>());
    // Binary payloads: hex in text, base64 in JSON, raw bytes in raw.
    let text = stdout(&spool(&["dump", &r, "bin"]));
    assert!(
        text.lines().next().is_some_and(|l| l.ends_with("\t0x000102ff")),
        "{text}"
    );
    let first: Value = serde_json::from_str(
        stdout(&spool(&["dump", &r, "bin", "--json"]))
            .lines()
            .next()
            .expect("line"),
    )
    .expect("json");
    assert_eq!(
        (first["base64"].as_str(), first["size"].as_u64()),
        (Some("AAEC/w=="), Some(4))
    );
    let raw = spool(&["dump", &r, "bin", "--format", "raw", "--from", "3"]);
    assert_eq!(raw.stdout, b"ok\n");
    let hex = stdout(&spool(&["dump", &r, "bin", "--format", "hex", "--limit", "1"]));
    assert!(hex.contains("4 bytes") && hex.contains("00 01 02 ff"), "{hex}");
    // --since: a duration ago (all of it) and a time after everything.
    let o = spool(&["dump", &r, "orders", "--since", "1d", "--limit", "1"]);
    assert!(stdout(&o).starts_with("1\t"), "{}", stdout(&o));
    let o = spool(&["dump", &r, "orders", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), String::new()));
    // Bad input.
    let e = one_line_error(&spool(&["dump", &r, "orders", "--since", "yesterday"]), 1);
    assert!(e.contains("cannot read the time"), "{e}");
    let e = one_line_error(&spool(&["dump", &r, "orders", "--from", "9999"]), 1);
    assert!(e.contains("ends at seq 2500"), "{e}");
    let e = one_line_error(&spool(&["dump", &r, "nope"]), 1);
    assert!(e.contains("no channel named \"nope\""), "{e}");
}

#[test]
fn tail_prints_the_last_messages() {
    let (_dir, r) = store();
    let o = spool(&["tail", &r, "orders", "-n", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let seqs: Vec<&str> = text.lines().map(|l| l.split('\t').next().unwrap_or("")).collect();
    assert_eq!(seqs, ["2499", "2500"]);
    let o = spool(&["tail", &r, "orders", "-n", "1", "--json"]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(
        (v["seq"].as_u64(), v["text"].as_str()),
        (Some(2500), Some("orders message 2500"))
    );
    let o = spool(&["tail", &r, "empty"]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), String::new()));
    one_line_error(&spool(&["tail", &r, "missing", "-f"]), 1);
}

#[test]
fn subscribers_text_and_json() {
    let (_dir, r) = store();
    let o = spool(&["subscribers", &r]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("CHANNEL") && lines[0].contains("LAG"), "{text}");
    assert!(
        lines[1].contains("billing") && lines[1].contains("1200") && lines[1].contains("1300"),
        "{text}"
    );
    assert!(
        lines[2].contains("workers") && lines[2].contains("queue group"),
        "{text}"
    );
    let v = json(&spool(&["subscribers", &r, "orders", "--json"]));
    assert_eq!(v[0]["channel"], "orders");
    assert_eq!(
        v[0]["subscribers"][0]["committed_ns"].as_u64().map(|t| t > 0),
        Some(true)
    );
    assert_eq!(v[0]["subscribers"][1]["lag"].as_u64(), Some(2497));
    let v = json(&spool(&["subscribers", &r, "bin", "--json"]));
    assert_eq!(v[0]["subscribers"].as_array().map(Vec::len), Some(0));
    one_line_error(&spool(&["subscribers", &r, "nope"]), 1);
}

#[test]
fn verify_finds_damage_with_file_and_offset() {
    let (_dir, r) = store();
    let o = spool(&["verify", &r]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("ok: 3 segments, 2503 records checked, 0 problems"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).is_empty(),
        "no progress bar when stderr is not a terminal: {}",
        stderr(&o)
    );
    let v = json(&spool(&["verify", &r, "--json"]));
    assert_eq!((v["ok"].as_bool(), v["records"].as_u64()), (Some(true), Some(2503)));
    // A flipped byte inside a record of the first (sealed) segment.
    let seg = Path::new(&r).join("channels/1/00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[128 + 24 + 3] ^= 0x40;
    std::fs::write(&seg, &bytes).expect("write");
    let o = spool(&["verify", &r]);
    assert_eq!(o.status.code(), Some(3), "problems found: {}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("PROBLEM") && text.contains("00000000000000000001.seg at offset 128"),
        "{text}"
    );
    assert!(text.contains("DAMAGED"), "{text}");
    let o = spool(&["verify", &r, "--json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"].as_bool(), Some(false));
    assert_eq!(v["problems"][0]["offset"].as_u64(), Some(128));
    // Reading the damaged record says so in one line.
    let e = one_line_error(&spool(&["dump", &r, "orders"]), 1);
    assert!(e.contains("corrupt data in") && e.contains("spool repair"), "{e}");
}

#[test]
fn repair_asks_then_reports_what_was_lost() {
    let (_dir, r) = store();
    let seg = Path::new(&r).join("channels/1/00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[128 + 24 + 3] ^= 0x40;
    std::fs::write(&seg, &bytes).expect("write");
    // Without --yes and without a terminal to ask on: refused, nothing done.
    let e = one_line_error(&spool(&["repair", &r]), 1);
    assert!(e.contains("--yes"), "{e}");
    assert_eq!(std::fs::read(&seg).expect("read"), bytes);
    let o = spool(&["repair", &r, "--yes"]);
    assert_eq!(o.status.code(), Some(3), "data was lost: {}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("LOST    channel \"orders\": seqs 1..=1 lost"), "{text}");
    assert!(text.contains("data was lost"), "{text}");
    let o = spool(&["verify", &r]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let dump = stdout(&spool(&["dump", &r, "orders", "--limit", "2"]));
    assert!(dump.starts_with("# seqs 1..=1 were lost"), "{dump}");
    assert!(dump.contains("2\t"), "{dump}");
    // A second repair finds nothing (JSON).
    let v = json(&spool(&["repair", &r, "--yes", "--json"]));
    assert_eq!(v["lost_anything"].as_bool(), Some(false));
}

#[test]
fn backup_makes_a_store() {
    let (dir, r) = store();
    let dest = dir.path().join("copy");
    let d = dest.to_str().expect("utf-8");
    let o = spool(&["backup", &r, d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("backed up 3 channels, 2503 messages, 2 subscribers to"),
        "{text}"
    );
    assert!(text.contains("hard-linked"), "{text}");
    let v = json(&spool(&["stat", d, "--json"]));
    assert_eq!(v["channels"][2]["last_seq"].as_u64(), Some(2500));
    assert_eq!(v["store_id"], json(&spool(&["stat", &r, "--json"]))["store_id"]);
    assert_eq!(spool(&["verify", d]).status.code(), Some(0));
    assert_eq!(
        stdout(&spool(&["dump", d, "orders", "--from", "2500"])),
        stdout(&spool(&["dump", &r, "orders", "--from", "2500"]))
    );
    // Into a non-empty directory: refused.
    let e = one_line_error(&spool(&["backup", &r, d]), 1);
    assert!(e.contains("is not empty"), "{e}");
    let v = json(&spool(&[
        "backup",
        &r,
        dir.path().join("copy2").to_str().expect("utf-8"),
        "--json",
    ]));
    assert_eq!((v["channels"].as_u64(), v["messages"].as_u64()), (Some(3), Some(2503)));
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let m = missing.to_str().expect("utf-8");
    for cmd in ["stat", "verify", "subscribers"] {
        let e = one_line_error(&spool(&[cmd, m]), 1);
        assert!(e.contains("no spool store at") && e.contains("does not exist"), "{e}");
    }
    assert!(!missing.exists(), "nothing created");
    // A directory that is not a store.
    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("cat.jpg"), b"meow").expect("write");
    let e = one_line_error(&spool(&["stat", foreign.to_str().expect("utf-8")]), 1);
    assert!(e.contains("cat.jpg") && e.contains("no catalog"), "{e}");
    let e = one_line_error(&spool(&["repair", foreign.to_str().expect("utf-8"), "--yes"]), 1);
    assert!(e.contains("no spool store"), "{e}");
    assert_eq!(std::fs::read_dir(&foreign).expect("ls").count(), 1);
    // A damaged catalog.
    let root = dir.path().join("store");
    make_store(&root);
    let r = root.to_str().expect("utf-8");
    std::fs::write(root.join("catalog"), b"SPOOLCAT garbage").expect("write");
    let e = one_line_error(&spool(&["stat", r]), 1);
    assert!(e.contains("corrupt data in") && e.contains("catalog"), "{e}");
    // Usage errors: clap's message, exit 2.
    let o = spool(&["dump", r]);
    assert_eq!(o.status.code(), Some(2));
    let o = spool(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Runs `spool` as another user (nobody) when the test runs as root, who
/// may read anything; as that user otherwise.
fn spool_unprivileged(args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_spool"));
    cmd.args(args);
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if root {
        cmd.uid(65534).gid(65534);
    }
    cmd.output().expect("run spool")
}

#[test]
fn no_permission_says_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    make_store(&root);
    // Everything readable to everyone but the catalog.
    let open_up = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    open_up(dir.path(), 0o755);
    open_up(&root, 0o755);
    open_up(&root.join("catalog"), 0o600);
    let r = root.to_str().expect("utf-8");
    let o = spool_unprivileged(&["stat", r]);
    let e = one_line_error(&o, 1);
    assert!(e.contains("permission denied") && e.contains("catalog"), "{e}");
    // The whole directory closed: still named as a permission problem.
    open_up(&root.join("catalog"), 0o644);
    open_up(&root, 0o700);
    let e = one_line_error(&spool_unprivileged(&["verify", r]), 1);
    assert!(e.contains("permission denied"), "{e}");
    // Repair needs write access: a user who may only read is told so.
    open_up(&root, 0o755);
    let e = one_line_error(&spool_unprivileged(&["repair", r, "--yes"]), 1);
    assert!(e.contains("permission denied") && e.contains("LOCK"), "{e}");
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        "stat",
        "dump",
        "tail",
        "subscribers",
        "verify",
        "backup",
        "repair",
        "relay",
    ] {
        let o = spool(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0));
        let text = stdout(&o);
        assert!(
            text.contains("Example") && text.contains(&format!("spool {cmd} ")),
            "{cmd}: {text}"
        );
    }
}

/// `spool relay` refuses what it cannot relay in one line, before and
/// after reaching for NATS. (Relaying through a real server is tested in
/// the relay crate, on the command both binaries share.)
#[test]
fn relay_errors_are_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let args = |d: &str, ch: &str| {
        spool(&[
            "relay",
            d,
            ch,
            "--nats",
            "nats://127.0.0.1:1",
            "--subject",
            "outbox.{channel}",
            "--quiet",
        ])
    };
    let e = one_line_error(&args(missing.to_str().expect("utf-8"), "orders"), 1);
    assert!(e.contains("no such directory"), "{e}");
    assert!(!missing.exists(), "nothing created");
    let root = dir.path().join("store");
    make_store(&root);
    let r = root.to_str().expect("utf-8");
    let e = one_line_error(&args(r, "nope"), 1);
    assert!(e.contains("no channel \"nope\""), "{e}");
    // Nothing listens on port 1.
    let e = one_line_error(&args(r, "orders"), 1);
    assert!(e.contains("connecting to nats://127.0.0.1:1"), "{e}");
    // --create-stream needs --stream: a usage error.
    let o = spool(&[
        "relay",
        r,
        "orders",
        "--nats",
        "nats://127.0.0.1:1",
        "--subject",
        "s",
        "--create-stream",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
