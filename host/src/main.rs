use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    weir::memory::return_large_buffers();
    let cli = weir::cli::Cli::parse();
    weir::cli::status::install_logging(cli.verbosity());
    match weir::cli::execute(cli) {
        Ok(outcome) => ExitCode::from(outcome.exit_status()),
        Err(e) => {
            weir::cli::status::report_error(&e);
            ExitCode::from(e.exit_status())
        }
    }
}
