//! The `rollgate` binary: install the crypto provider, parse the command
//! line, run. Everything else is in the library.

use std::process::ExitCode;

use anyhow::Context;
use rollgate::cli::{CertsCommand, CertsGenerateArgs, Cli, Command, LogFormat, client};

fn main() -> ExitCode {
    // One process-wide rustls provider (ring) for the servers, kube and the CLI.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = rollgate::cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let config = rollgate::config::Config::load(&args).context("invalid configuration")?;
            let server = rollgate::server::start(config.clone())
                .await
                .context("cannot start rollgate")?;
            if let Some(dir) = &config.dev_dir {
                let text = rollgate::dev::quickstart(
                    dir,
                    server.webhook_addr,
                    server.api_addr,
                    server.admin_addr,
                )
                .context("cannot print the quickstart")?;
                println!("{text}");
            }
            shutdown_signal().await;
            tracing::info!("shutting down: draining in-flight requests");
            server.shutdown();
            server.wait().await;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Ticket(cmd) => Ok(client::ticket(cmd).await?),
        Command::Grant(cmd) => Ok(client::grant(cmd).await?),
        Command::Redeploy(args) => Ok(client::redeploy(args).await?),
        Command::Audit(cmd) => Ok(client::audit(cmd).await?),
        Command::Certs(CertsCommand::Generate(args)) => certs_generate(args),
    }
}

/// `rollgate certs generate`: files into `--out`, a summary on stderr, the
/// caBundle (or the kubectl patch carrying it) alone on stdout for scripts.
fn certs_generate(args: CertsGenerateArgs) -> anyhow::Result<()> {
    let request = rollgate::certs::Request {
        services: args.services,
        namespace: args.namespace,
        extra_names: args.extra_names,
        out: args.out,
        days: i64::from(args.days),
        new_ca: args.new_ca,
        signing_key: args.signing_key,
    };
    let generated = rollgate::certs::generate(&request)
        .with_context(|| format!("cannot make certificates in {}", request.out.display()))?;
    eprintln!(
        "{} CA; serving certificate for {} valid {} days",
        if generated.reused_ca {
            "reused the"
        } else {
            "made a new"
        },
        generated.names.join(", "),
        request.days
    );
    for path in &generated.written {
        eprintln!("  wrote {}", path.display());
    }
    match args.patch {
        Some(name) => println!(
            "{}",
            rollgate::certs::patch_command(&name, &generated.ca_bundle, 2)
        ),
        None => println!("{}", generated.ca_bundle),
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written (stderr on a full disk) is lost, not
    // reported with `eprintln!`, which panics when stderr fails and took the
    // request being handled down with it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
