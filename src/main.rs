use std::process::ExitCode;

fn main() -> ExitCode {
    hisp::cli::main()
}
