//! Command line: `serve` (default), `check`, `tools`, `call`, `simulate`; flags mirror the environment.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::config::fleet::Fleet;
use crate::config::{Config, SETTINGS};

mod call;
mod certificate;
mod check;
pub use call::tool_json;

/// Parsed command line: the subcommand, its own arguments, and setting overrides keyed by env name.
#[derive(Debug, Default)]
pub struct Args {
    pub command: String,
    pub rest: Vec<String>,
    pub overrides: BTreeMap<String, String>,
    pub help: bool,
    pub version: bool,
}

const COMMANDS: &[(&str, &str)] = &[
    ("serve", "run the MCP server on stdin/stdout (the default)"),
    ("check", "diagnose the configuration and the connection to every NAS (or --nas NAME), step by step"),
    ("tools", "list the tool catalogue (--json for the MCP definitions)"),
    ("call", "run one tool: call <tool> [--nas NAME] [--args JSON | key=value ...] [--json]"),
    (
        "simulate",
        "run the TrueNAS simulator: simulate --listen 127.0.0.1:8080 [--version 25.04] [--tls-cert F --tls-key F]",
    ),
];

/// Split argv into settings flags (anywhere), the subcommand and its arguments.
pub fn parse_args(argv: &[String]) -> Result<Args> {
    let mut args = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if let Some(s) = SETTINGS.iter().find(|s| s.flag == name) {
            let value = if s.switch {
                inline.unwrap_or_else(|| "true".to_string())
            } else if let Some(v) = inline {
                v
            } else {
                i += 1;
                match argv.get(i) {
                    Some(v) => v.clone(),
                    None => bail!("{} needs a value ({})", s.flag, s.help),
                }
            };
            args.overrides.insert(s.env.to_string(), value);
        } else if name == "--insecure" {
            args.overrides.insert("TRUENAS_SSL_VERIFY".into(), "false".into());
        } else if (a == "--help" || a == "-h") && (args.command.is_empty() || args.command == "serve") {
            args.help = true;
        } else if (a == "--version" || a == "-V") && args.command.is_empty() {
            args.version = true;
        } else if args.command.is_empty() && !a.starts_with('-') && COMMANDS.iter().any(|(c, _)| c == a) {
            args.command = a.clone();
        } else if args.command.is_empty() && !a.starts_with('-') {
            bail!("unknown command '{a}' (commands: serve, check, tools, call, simulate; see --help)");
        } else if args.command.is_empty() || args.command == "serve" {
            bail!("unknown option '{a}' (see --help)");
        } else {
            args.rest.push(a.clone());
        }
        i += 1;
    }
    if args.command.is_empty() {
        args.command = "serve".into();
    }
    Ok(args)
}

const SIMULATE_HELP: &str = "truenas-mcp simulate [OPTIONS]

Serve the built-in TrueNAS simulator (middleware + WebSocket front) until killed, to try the real wire path
without a NAS. It prints the URL and the credentials to use on stderr.
  --listen ADDR          address to listen on (default 127.0.0.1:8080)
  --version V            TrueNAS release to imitate: 24.10 (legacy /websocket only), 25.04 (default), 25.10
  --tls-cert F --tls-key F   serve wss:// with this PEM certificate and PKCS#8 key
  --no-pool              no pool configured for apps (Docker UNCONFIGURED)
  --empty                start without the example apps
  --idle-timeout SECS    close idle connections like nginx (default 60)
  --job-step-ms N        time per job progress step (default 500)
  --add-api-key ID-SECRET    accept this API key (owned by the first user)
  --add-user NAME:PASSWORD   accept this user as well as mcp-service / mock-password
  --plain-tcp-remote     treat plain ws:// peers as remote (an API key sent that way gets revoked, like 25.04+)
";

pub fn usage() -> String {
    let mut s = format!(
        "truenas-mcp {} — MCP server for TrueNAS SCALE Custom Apps (Docker Compose)\n\n\
         USAGE: truenas-mcp [COMMAND] [OPTIONS]\n\nCOMMANDS:\n",
        env!("CARGO_PKG_VERSION")
    );
    for (c, h) in COMMANDS {
        s.push_str(&format!("  {c:<10} {h}\n"));
    }
    s.push_str("\nSETTINGS (flag, environment variable, default):\n");
    for st in SETTINGS {
        let flag = if st.switch { st.flag.to_string() } else { format!("{} <v>", st.flag) };
        s.push_str(&format!("  {flag:<28} {:<32} {:<12} {}\n", st.env, st.default, st.help));
    }
    s.push_str("  --insecure                   same as --ssl-verify false\n");
    s.push_str("\nEvery command accepts --help. Logs go to stderr (RUST_LOG=debug for more).\n");
    s
}

/// Warnings `check` and `call` print themselves as their result (a failed connection or login): logged too, a
/// person would read the same error twice. Matched by the beginning of the message of `truenas::actor`.
const REPORTED_BY_THE_COMMAND: &[&str] = &["connecting to truenas failed", "logging in again failed"];

/// The logger: env_logger, minus the records the running command reports itself.
struct Logger {
    inner: env_logger::Logger,
    reported: &'static [&'static str],
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.inner.enabled(metadata)
    }
    fn log(&self, record: &log::Record) {
        let reported = !self.reported.is_empty()
            && record.target().starts_with("truenas_mcp::truenas")
            && self.reported.iter().any(|p| record.args().to_string().starts_with(p));
        if !reported {
            self.inner.log(record);
        }
    }
    fn flush(&self) {
        self.inner.flush();
    }
}

fn init_logging(config: &Config, command: &str) {
    let default = if config.debug { "debug" } else { "warn" };
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .target(env_logger::Target::Stderr)
        .build();
    let reported = if matches!(command, "check" | "call") { REPORTED_BY_THE_COMMAND } else { &[] };
    let level = inner.filter();
    if log::set_boxed_logger(Box::new(Logger { inner, reported })).is_ok() {
        log::set_max_level(level);
    }
}

/// What to do about any bad setting, after the setting's own message (which names it and what it accepts).
const CONFIGURATION_FIX: &str =
    "fix it where the server is started (the MCP client's env, or the flag); `truenas-mcp --help` lists every setting";

/// A bad setting, said so in the first line on stderr: MCP clients log a failed server's stderr, and a person reads
/// the first line first.
fn configuration_error(e: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!("configuration error: {e:#}; {CONFIGURATION_FIX}")
}

/// Print to stdout for the human-facing subcommands (never used by `serve`).
pub fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("truenas-mcp: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What `serve` says when a person, not an MCP client, runs it: one line on stderr (stdout is the protocol's).
fn terminal_hint(stdin_is_terminal: bool) -> Option<&'static str> {
    stdin_is_terminal.then_some(
        "truenas-mcp: an MCP server for TrueNAS Custom Apps, waiting for an MCP client on stdin/stdout (JSON-RPC). \
         To try it by hand: `truenas-mcp call list_custom_apps --mock` or `truenas-mcp tools`; Ctrl-D quits",
    )
}

/// One warning per secret given as a flag: any user of the machine can read it in the process list.
fn secret_flag_warnings(args: &Args) -> Vec<String> {
    SETTINGS
        .iter()
        .filter(|s| s.secret && args.overrides.contains_key(s.env))
        .map(|s| format!("{} puts the secret in the process list; use {}-file or {}_FILE", s.flag, s.flag, s.env))
        .collect()
}

/// Tool calls that run at once. TrueNAS executes 10 calls per connection at a time and the client keeps up to
/// `truenas::actor::MAX_ON_WIRE` (16) on the wire; with fewer workers than that, concurrent tool calls wait for a
/// worker instead of for the NAS (4 workers measured 3.7× the ideal time in `cargo bench --bench system --
/// pipelining`). Idle workers cost a blocked thread each.
const TOOL_WORKERS: usize = crate::truenas::actor::MAX_ON_WIRE;

fn run(argv: &[String]) -> Result<ExitCode> {
    let args = parse_args(argv)?;
    if args.version {
        out(&format!("truenas-mcp {}\n", env!("CARGO_PKG_VERSION")))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.help {
        out(&usage())?;
        return Ok(ExitCode::SUCCESS);
    }
    let fleet = Fleet::from_sources(&|k| std::env::var(k).ok(), &args.overrides).map_err(configuration_error)?;
    for nas in &fleet.entries {
        crate::compose::rules::check_allowed(&nas.config.policy.allow_rules)
            .map_err(|e| configuration_error(anyhow::Error::msg(e)))?;
    }
    // The process-wide settings (logging, mock mode, audit log) are the same in every entry.
    let config = fleet.default_entry().config.clone();
    if let Some(path) = &config.mock_state {
        crate::sim::check_state_file(path).map_err(configuration_error)?;
    }
    // After the settings are known to be good, so that a bad one is always the first line.
    for warning in secret_flag_warnings(&args) {
        eprintln!("truenas-mcp: warning: {warning}");
    }
    init_logging(&config, &args.command);
    match args.command.as_str() {
        "serve" => {
            if let Some(hint) = terminal_hint(std::io::stdin().is_terminal()) {
                eprintln!("{hint}");
            }
            let test_clock = crate::clock::from_test_env(|k| std::env::var(k).ok());
            let mut tools = crate::tools::Fleet::new(&fleet);
            let mut opts = crate::mcp::ServeOptions { workers: TOOL_WORKERS, ..Default::default() };
            if let Some(clock) = test_clock {
                tools = tools.with_clock(clock.clone());
                opts.clock = clock;
            }
            let tools = Arc::new(tools);
            tools.audit().open().map_err(anyhow::Error::msg)?;
            install_termination(tools.clone());
            let code = crate::mcp::serve(tools.clone(), opts);
            // Every way serve ends (input closed and drained or not, output closed) comes back here while workers
            // may still run a change: record those as unknown before the process ends.
            tools.audit().close();
            code
        }
        "tools" => call::run_tools(&fleet, &args.rest),
        "call" => call::run_call(&fleet, &args.rest),
        "check" => check::run_check(&fleet, &args.rest),
        "simulate" => {
            if args.rest.iter().any(|a| a == "--help" || a == "-h") {
                out(SIMULATE_HELP)?;
                return Ok(ExitCode::SUCCESS);
            }
            crate::sim::run_cli(&args.rest)?;
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("'{other}' is not available yet"),
    }
}

/// MCP clients end a stdio server with SIGTERM (after closing its input): record the changes still in flight as
/// unknown before the process goes, exactly as the other ways `serve` ends do.
fn install_termination(tools: Arc<crate::tools::Fleet>) {
    let result = ctrlc::set_handler(move || {
        let pending = tools.audit().close();
        log::warn!("terminated by a signal with {pending} change(s) in flight");
        std::process::exit(143);
    });
    if let Err(e) = result {
        log::debug!("cannot install the termination handler: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_mirror_settings_anywhere() {
        let a = parse_args(&argv("--mock call list_custom_apps --port 8443 status_filter=all")).unwrap();
        assert_eq!(a.command, "call");
        assert_eq!(a.overrides.get("MOCK_TRUENAS").map(String::as_str), Some("true"));
        assert_eq!(a.overrides.get("TRUENAS_PORT").map(String::as_str), Some("8443"));
        assert_eq!(a.rest, vec!["list_custom_apps", "status_filter=all"]);
        let a = parse_args(&argv("--host=nas.local")).unwrap();
        assert_eq!(a.command, "serve");
        assert_eq!(a.overrides.get("TRUENAS_HOST").map(String::as_str), Some("nas.local"));
    }

    #[test]
    fn bad_command_lines_are_explained() {
        assert_eq!(parse_args(&argv("--port")).unwrap_err().to_string(), "--port needs a value (WebSocket port)");
        assert!(parse_args(&argv("frobnicate")).unwrap_err().to_string().contains("unknown command 'frobnicate'"));
        assert!(parse_args(&argv("--bogus")).unwrap_err().to_string().contains("unknown option '--bogus'"));
        assert!(parse_args(&argv("serve --help")).unwrap().help);
    }

    #[test]
    fn serve_explains_itself_only_to_a_terminal() {
        let hint = terminal_hint(true).unwrap();
        for part in ["MCP server", "stdin/stdout", "truenas-mcp call list_custom_apps --mock", "Ctrl-D"] {
            assert!(hint.contains(part), "{hint}");
        }
        assert!(!hint.contains('\n'));
        assert_eq!(terminal_hint(false), None);
    }

    #[test]
    fn secret_flags_are_warned_about_without_the_secret() {
        let a = parse_args(&argv("--password hunter2 --api-key=1-abc --host nas")).unwrap();
        let warnings = secret_flag_warnings(&a);
        assert_eq!(
            warnings,
            [
                "--password puts the secret in the process list; use --password-file or TRUENAS_PASSWORD_FILE",
                "--api-key puts the secret in the process list; use --api-key-file or TRUENAS_API_KEY_FILE",
            ]
        );
        let a = parse_args(&argv("--password-file /run/secrets/tn --host nas")).unwrap();
        assert!(secret_flag_warnings(&a).is_empty());
    }
}
