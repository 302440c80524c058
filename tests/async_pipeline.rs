//! Runs `examples/async_pipeline` (its own assertions check the results:
//! every order shipped once, the committed position and total after a
//! restart) and checks that it succeeded.

use std::path::Path;
use std::process::Command;

#[test]
fn the_async_pipeline_example_runs_and_checks_out() {
    // target/<profile>/deps/<test> -> target/<profile>/examples/async_pipeline
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("examples").join("async_pipeline");
    // Built every time: `cargo test --test async_pipeline` alone does not
    // rebuild examples, and a stale binary would test old code.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--example", "async_pipeline"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building the example failed");
    let out = Command::new(&bin).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed: {}\n{stdout}\n{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every job acked"), "{stdout}");
}
