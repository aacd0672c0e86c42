//! The `avix` binary: parses arguments and hands over to [`avix_cli::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    avix_fuse::guard::run_if_guard();
    let args = avix_cli::Args::parse();
    match avix_cli::run(args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // A closed stdout (`avix … | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", avix_cli::one_line(&e));
            ExitCode::from(avix_cli::exit_code(&e))
        }
    }
}
