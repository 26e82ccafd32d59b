use clap::Parser;
use tenantctl::cli::{Cli, Command};
use tenantctl::commands;
use tenantctl::error::{Exit, UserError};

fn main() {
    // clap exits 2 on a usage error, which `plan --detailed-exitcode` uses for "changes
    // present": usage errors exit 1 like every other error.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 1 } else { 0 };
            let _ = error.print();
            std::process::exit(code);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Validate(args) => commands::validate::run(args),
            Command::Plan(args) => commands::plan::run(args).await,
            Command::Apply(args) => commands::apply::run(args).await,
            Command::Show(args) => commands::show::run(args),
            Command::Watch(args) => commands::watch::run(args).await,
        }
    });
    let exit = match result {
        Ok(exit) => exit,
        Err(error) => {
            if let Some(user) = error.downcast_ref::<UserError>() {
                eprintln!("{user}");
            } else {
                // `{:#}` joins the context chain: "another apply is running: could not take ...".
                eprintln!("error: {error:#}");
            }
            Exit::Failure
        }
    };
    std::process::exit(exit.code());
}
