//! `modelrouter`: one binary for every Model Router service.

mod auto;
mod backbone;
mod books;
mod config;
mod memory;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use clap::{Parser, Subcommand};

use config::Config;

/// mimalloc: the request path allocates many small, short-lived buffers, where
/// it measurably beats the system allocator (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "modelrouter",
    version,
    about = "One OpenAI-compatible endpoint in front of every LLM provider."
)]
struct Cli {
    /// A TOML config file (overrides defaults; environment variables override it).
    #[arg(long, global = true, env = "MODELROUTER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embedded mode: everything in one process on one port, with the simulator when no provider key is set.
    Up,
    /// The gateway alone, against the providers configured by environment or file.
    Gateway,
    /// The control plane alone: dashboard and JSON admin API.
    ControlPlane,
    /// The ledger alone (no subcommand), or its tools.
    Ledger {
        #[command(subcommand)]
        command: Option<LedgerCommand>,
    },
    /// The exporter alone: request traces to each tenant's OTLP backends.
    Exporter,
    /// Applies the ledger store's migrations.
    Migrate,
    /// Grants credits to an account (an operator's tool: support credits, corrections).
    Grant {
        /// The account id.
        #[arg(long)]
        account: String,
        /// USD, as a decimal (`25`, `0.50`).
        #[arg(long)]
        amount: String,
        /// Why, for the journal.
        #[arg(long, default_value = "operator grant")]
        reason: String,
    },
    /// Replays the whole event log into a scratch projection and compares it
    /// with the ledger; prints every difference and fails if there is one.
    Reconcile {
        /// Also match every settled deposit, auto-recharge, refund and
        /// dispute with Stripe's records, both ways (needs STRIPE_SECRET_KEY).
        #[arg(long)]
        stripe: bool,
    },
    /// Dashboard users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The provider simulator alone.
    Simulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
    },
    /// Catalog tools.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Asks this machine's service (on the listen address) for a probe:
    /// exits 0 when it answers 200. For container health checks, where the
    /// image has no HTTP client.
    Probe {
        /// `readyz` or `livez`.
        #[arg(default_value = "readyz")]
        which: String,
    },
    /// Measures `model: "auto"` on labelled conversations: on a file, the
    /// configured model's accuracy, under/over-routing, regret and confusion
    /// matrix; without one, the shipped set's leave-one-family-out,
    /// held-out and training figures.
    Evaluate {
        path: Option<PathBuf>,
        /// Prints why the model scores the conversation with this id as it does.
        #[arg(long)]
        explain: Option<String>,
        /// Instead of the report: the left-out figure with each fold fitted
        /// on 10, 20, … of the other families, drawn DRAWS times each.
        #[arg(
            long,
            value_name = "DRAWS",
            num_args = 0..=1,
            default_missing_value = "2",
            conflicts_with = "explain"
        )]
        family_curve: Option<u64>,
        #[command(flatten)]
        fit: auto::FitArgs,
    },
    /// Fits the `model: "auto"` model on the training split of a labelled
    /// set (the shipped one if no `--corpus`) and writes the model file.
    TrainAuto {
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Where to write the model (`shared/catalog/auto_model.json` ships).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        fit: auto::FitArgs,
    },
}

impl Command {
    /// Whether the command only reads and prints a report: then a reader
    /// that stops early (`| head`) ends it quietly, as it ends any Unix tool,
    /// rather than making it panic on the closed pipe.
    fn only_reports(&self) -> bool {
        matches!(
            self,
            Command::Evaluate { .. }
                | Command::TrainAuto { .. }
                | Command::Catalog { .. }
                | Command::Reconcile { .. }
                | Command::Ledger {
                    command: Some(LedgerCommand::Export { .. })
                }
        )
    }
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Writes the journal lines of UTC days FROM to TO (inclusive) as CSV.
    Export {
        #[arg(long)]
        from: chrono::NaiveDate,
        #[arg(long)]
        to: chrono::NaiveDate,
        /// A file to write; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Prints a one-time link (valid for an hour) that sets EMAIL's password.
    ResetPassword { email: String },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validates a catalog file (the shipped one if no path) and prints a summary.
    Check { path: Option<PathBuf> },
}

fn main() -> ExitCode {
    // Everything this process creates (databases, journals, secrets, saved
    // views) is for its own user only: files 0600, directories 0700.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; no memory is involved.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    #[cfg(unix)]
    if cli.command.only_reports() {
        // SAFETY: restores the default action of one signal; no memory is involved.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // A static per-target filter: unlike `EnvFilter` it keeps no per-span
    // state, so entering the request span each poll takes no shared lock.
    let filter = std::env::var("MODELROUTER_LOG").unwrap_or_else(|_| "info".into());
    let targets = filter.parse::<Targets>().unwrap_or_else(|e| {
        eprintln!("MODELROUTER_LOG={filter:?}: {e}; logging at info");
        Targets::new().with_default(tracing::Level::INFO)
    });
    // Colours only for a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .finish()
        .with(targets)
        .init();
    let config = match Config::load(cli.config.as_deref(), |name| std::env::var(name).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up => serve::up(config).await,
            Command::Gateway => serve::gateway(config).await,
            Command::ControlPlane => serve::control_plane(config).await,
            Command::Ledger { command: None } => serve::ledger(config).await,
            Command::Ledger {
                command: Some(LedgerCommand::Export { from, to, out }),
            } => serve::export(config, from, to, out).await,
            Command::Exporter => serve::exporter(config).await,
            Command::Migrate => serve::migrate(config).await,
            Command::Grant {
                account,
                amount,
                reason,
            } => serve::grant(config, &account, &amount, reason).await,
            Command::Reconcile { stripe } => serve::reconcile(config, stripe).await,
            Command::User {
                command: UserCommand::ResetPassword { email },
            } => serve::reset_password(config, &email).await,
            Command::Simulator { listen } => serve::simulator(config, listen).await,
            Command::Catalog {
                command: CatalogCommand::Check { path },
            } => serve::check_catalog(path.or(config.catalog)),
            Command::Probe { which } => serve::probe(config.listen, &which).await,
            Command::Evaluate {
                path,
                family_curve: Some(draws),
                fit,
                ..
            } => auto::family_curve(path, draws, fit, &config.gateway.auto),
            Command::Evaluate {
                path, explain, fit, ..
            } => auto::evaluate(path, explain, fit, &config.gateway.auto),
            Command::TrainAuto { corpus, out, fit } => auto::train(corpus, &out, fit),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
