//! The `agent` binary: parsing, dispatch and exit codes live in `agent::cli`.

fn main() -> std::process::ExitCode {
    agent::cli::main()
}
