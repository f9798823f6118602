//! Guards the progress bars: put, cp, dedupe-scan and check of megabytes print nothing on a
//! standard error that is not a terminal (and still copy byte for byte), and put draws a byte
//! bar on a terminal (a pseudo-terminal from script(1); skipped loudly without it).

mod cli_sandbox;

use cli_sandbox::{checksum, unique_bytes, Sandbox};
use std::process::Command;

#[test]
fn put_cp_dedupe_scan_and_check_write_nothing_to_a_standard_error_that_is_not_a_terminal() {
    let s = Sandbox::with_pool("64m");
    let data = unique_bytes(9, 8 << 20);
    std::fs::write(s.host_path("big.bin"), &data).unwrap();
    for args in [
        &["put", "test.pool", "big.bin", "/big"][..],
        &["cp", "test.pool", "/big", "/copy"],
        &["dedupe-scan", "test.pool"],
        &["check", "test.pool"],
    ] {
        let run = s.run(args);
        assert_eq!((run.status, run.stderr.as_str()), (0, ""), "{args:?}");
    }
    assert_eq!(checksum(&s.cat("/copy")), checksum(&data));
    assert_eq!(
        s.json(&["stat", "test.pool", "/copy", "--json"])["shared_bytes"],
        8 << 20,
        "the scan shared the copy"
    );
}

#[test]
fn put_draws_a_byte_progress_bar_when_standard_error_is_a_terminal() {
    let Some(script) =
        ["/usr/bin/script", "/bin/script"].into_iter().find(|p| std::path::Path::new(p).is_file())
    else {
        cli_sandbox::skipped(
            "put_draws_a_byte_progress_bar_when_standard_error_is_a_terminal",
            "no script(1) to make a pseudo-terminal; the progress bar was not seen",
        );
        return;
    };
    let s = Sandbox::with_pool("64m");
    std::fs::write(s.host_path("big.bin"), unique_bytes(10, 8 << 20)).unwrap();
    let command = format!("{} put test.pool big.bin /big", env!("CARGO_BIN_EXE_ferrodax"));
    let output = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(
        terminal.contains("put [") && terminal.contains("/8.00 MiB"),
        "no bar on the terminal: {terminal:?}"
    );
    assert_eq!(s.cat("/big").len(), 8 << 20);
}
