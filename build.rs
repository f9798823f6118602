//! Links the unwinder statically on Linux with glibc, as `gcc -static-libgcc` does.
//!
//! Owns one link-time choice and nothing else: it must never change what the code does, only which
//! copy of libgcc's unwinder the programs use.
//!
//! Why: the `ferrodax` command runs as one process per command, so what a process pays before
//! `main` counts. Rust's standard library links `libgcc_s.so.1` for unwinding, and that library's
//! constructor (`__cpu_indicator_init`) probes the processor with dozens of CPUID instructions. On a
//! virtual machine each CPUID traps to the hypervisor (4 µs each on the development machine), so
//! loading libgcc_s cost every process about 180 µs of its 2.7 ms reflink. The static archive
//! `libgcc_eh.a` holds the same unwinder without that constructor.
//!
//! How: rustc asks the linker for `-lgcc_s`. This script writes a linker script named
//! `libgcc_s.so` into OUT_DIR whose one line is `INPUT(<path of libgcc_eh.a>)` and puts OUT_DIR
//! first on the library search path, so `-lgcc_s` links the static unwinder. Cargo passes the
//! search path to everything that links this package (its binary, tests and the workspace's
//! tools), so they all link it the same way. Where the C compiler knows no `libgcc_eh.a` (another
//! toolchain, another C library), and in a cross build, nothing changes and the programs load
//! libgcc_s as before.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    // A cross build would find the host compiler's archive, for the wrong machine.
    let cross = std::env::var("HOST").ok() != std::env::var("TARGET").ok();
    if target_os != "linux" || target_env != "gnu" || cross {
        return;
    }
    let Some(unwinder) = static_unwinder() else {
        println!("cargo:warning=no libgcc_eh.a found: the programs load libgcc_s.so.1 (about 0.2 ms more per process)");
        return;
    };
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = format!(
        "/* written by ferrodax's build.rs: link the unwinder statically */\nINPUT({})\n",
        unwinder.display()
    );
    std::fs::write(out_dir.join("libgcc_s.so"), script).expect("writing the linker script into OUT_DIR");
    println!("cargo:rustc-link-search=native={}", out_dir.display());
    // Tells the package's tests that the programs must not load libgcc_s.
    println!("cargo:rustc-env=FERRODAX_STATIC_UNWINDER=1");
}

/// The absolute path of `libgcc_eh.a` as the C compiler that links the programs finds it.
fn static_unwinder() -> Option<PathBuf> {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let output = Command::new(compiler).arg("-print-file-name=libgcc_eh.a").output().ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    // Not found, the compiler prints the bare name back. A ')' would end the script's INPUT list.
    (path.is_absolute() && path.is_file() && !path.to_string_lossy().contains(')')).then_some(path)
}
