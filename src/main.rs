//! The `ferrodax` command: see `ferrodax --help`.

fn main() {
    std::process::exit(ferrodax_cli::run());
}

#[path = "cli/mod.rs"]
mod ferrodax_cli;
