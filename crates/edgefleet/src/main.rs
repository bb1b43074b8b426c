//! `edgefleet`: the server (`serve`), a one-command demonstration (`demo`), and client commands
//! that drive a running server through its REST API.

mod agent_cmd;
mod allocator;
mod cli;
mod db;
mod demo;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edgefleet",
    version,
    about = "Configuration templates and plugins for fleets of NeuronEX edge services"
)]
struct Args {
    /// `text` for people, `json` for log collectors (one JSON object per line, with the dotted
    /// fields such as `delivery.id` and `edge.id`).
    #[arg(long, global = true, env = "EDGEFLEET_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Start a server, a simulated fleet and sample templates on this machine, with no setup.
    Demo(demo::DemoArgs),
    /// Run the agent beside a NeuronEX that edgefleet cannot reach: it connects out to the MQTT
    /// broker and makes edgefleet's calls on the local NeuronEX.
    Agent(agent_cmd::AgentArgs),
    /// Database maintenance.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Sign in to a server and remember the token for the other client commands.
    Login(cli::LoginArgs),
    /// Edge services of a project.
    #[command(subcommand)]
    Edge(cli::EdgeCommand),
    /// Configuration templates of a project.
    #[command(subcommand)]
    Template(cli::TemplateCommand),
    /// Algorithm plugins (eKuiper portable plugins) of a project.
    #[command(subcommand)]
    Plugin(cli::PluginCommand),
    /// Deliver a template to edge services, optionally watching the results live.
    Deliver(cli::DeliverArgs),
    /// Plans, applying them, and rollbacks.
    #[command(subcommand)]
    Delivery(cli::DeliveryCommand),
    /// Read the operation audit.
    Audit(cli::AuditArgs),
    /// Maintenance windows: when deliveries with --respect-windows may start a target.
    #[command(subcommand)]
    Window(cli::WindowCommand),
    /// Webhooks: receivers of delivery and drift events, their test and their call log.
    #[command(subcommand)]
    Webhook(cli::WebhookCommand),
    /// Which objects the project's edge services hold (as their last drift check found).
    Inventory(cli::InventoryArgs),
    /// Your projects, and project settings (approvals).
    #[command(subcommand)]
    Project(cli::ProjectCommand),
    /// Choose the project the other commands use when they get no --project.
    Use(cli::UseArgs),
    /// Print a shell completion script: `edgefleet completions bash > /etc/bash_completion.d/edgefleet`.
    Completions { shell: clap_complete::Shell },
}

impl Command {
    /// The commands that hold a whole fleet's work in memory and run for months.
    fn is_server(&self) -> bool {
        matches!(self, Command::Serve(_) | Command::Demo(_))
    }

    /// Commands that print for a person or a pipe and end (not the long-running processes).
    fn is_client(&self) -> bool {
        !matches!(self, Command::Serve(_) | Command::Demo(_) | Command::Agent(_))
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.command.is_server() {
        // Before any thread exists: the restart replaces the whole process.
        allocator::start_tuned();
    }
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(err) => {
            eprintln!("edgefleet: starting the async runtime: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::process::ExitCode {
    if args.command.is_client() {
        // `edgefleet delivery list | head` ends quietly when head has read enough, as other
        // command-line tools do. The server keeps Rust's default (a closed socket is an error to
        // handle, not a reason to die).
        sigpipe::reset();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
    let outcome = match args.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Agent(args) => agent_cmd::run(args).await,
        Command::Db(command) => db::run(command).await,
        Command::Login(args) => cli::login(args).await,
        Command::Edge(command) => cli::edge(command).await,
        Command::Template(command) => cli::template(command).await,
        Command::Plugin(command) => cli::plugin(command).await,
        Command::Deliver(args) => cli::deliver(args).await,
        Command::Delivery(command) => cli::delivery(command).await,
        Command::Webhook(command) => cli::webhook(command).await,
        Command::Audit(args) => cli::audit(args).await,
        Command::Window(command) => cli::window(command).await,
        Command::Inventory(args) => cli::inventory(args).await,
        Command::Project(command) => cli::project(command).await,
        Command::Use(args) => cli::use_project(args).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Args as clap::CommandFactory>::command(),
                "edgefleet",
                &mut std::io::stdout(),
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("edgefleet: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
