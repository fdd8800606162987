//! The distributed deployment as separate `modelrouter` processes (the
//! binary under test, passed in by the test), each with its own data dir,
//! on one NATS server and one PostgreSQL database.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use money::Money;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::backends::TempDir;

/// The API key `modelrouter gateway` processes are started with.
pub const KEY: &str = "mr_sk_distributedTestKey0123456789abcdefghij";

/// Environment shared by every process of the deployment. Dropped (after
/// the processes a test started from it, which it outlives), it deletes its
/// prefix's streams and buckets from the NATS server, which every test and
/// bench on the machine shares; a test that panics cleans up too.
pub struct Deployment {
    /// The `modelrouter` binary.
    pub bin: PathBuf,
    pub nats_url: String,
    pub prefix: String,
    pub database: String,
    pub dir: TempDir,
}

impl Deployment {
    /// A deployment of `bin` on `nats_url` and `database`, with a fresh prefix.
    pub fn new(bin: &str, nats_url: &str, database: &str) -> Deployment {
        Deployment {
            bin: PathBuf::from(bin),
            nats_url: nats_url.to_owned(),
            prefix: format!("d{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            database: database.to_owned(),
            dir: TempDir::new(),
        }
    }

    /// A `modelrouter` command with the deployment's settings and data dir
    /// `data` (under the deployment's directory); no provider keys.
    pub fn command(&self, args: &[&str], data: &str) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env("MODELROUTER_EVENT_LOG", &self.nats_url)
            .env("MODELROUTER_NATS_PREFIX", &self.prefix)
            .env("MODELROUTER_DATABASE_URL", &self.database)
            .env("MODELROUTER_DATA_DIR", self.data_dir(data))
            .env("MODELROUTER_LISTEN", "127.0.0.1:0")
            .env("MODELROUTER_LOG", "warn")
            .env_remove("MODELROUTER_CONFIG")
            .env_remove("MODELROUTER_GATEWAY_ID")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for var in [
            "OPENAI_API_KEY",
            "XAI_API_KEY",
            "GROQ_API_KEY",
            "CEREBRAS_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
        ] {
            command.env_remove(var);
        }
        command
    }

    /// The data dir named `data`.
    pub fn data_dir(&self, data: &str) -> PathBuf {
        self.dir.0.join(data)
    }

    /// Starts a long-running process and waits (bounded) for a banner line
    /// containing `until`; returns the process and that line.
    /// Its log (stderr) is kept for [`Deployment::log_of`].
    pub async fn start(&self, mut command: Command, until: &str) -> (Child, String) {
        let logs = self.dir.0.join("logs");
        std::fs::create_dir_all(&logs).expect("a log dir");
        let starting = logs.join(format!("{}.starting", uuid::Uuid::new_v4().simple()));
        let log = std::fs::File::create(&starting).expect("a log file");
        command.stdout(Stdio::piped()).stderr(log);
        let mut child = command.spawn().expect("modelrouter starts");
        // Named by the process once it has one; the process keeps writing to it.
        let pid = child.id().unwrap_or_default();
        std::fs::rename(&starting, logs.join(format!("{pid}.log"))).expect("the log renamed");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut found = String::new();
        let read = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(until) {
                    found = line;
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("banner within 60 s");
        assert!(
            !found.is_empty(),
            "the process ended before printing `{until}`"
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, found)
    }

    /// What `child` (started by [`Deployment::start`]) has logged so far.
    pub fn log_of(&self, child: &Child) -> String {
        let pid = child.id().unwrap_or_default();
        let path = self.dir.0.join("logs").join(format!("{pid}.log"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
    }

    /// Starts the provider simulator; returns it and its URL.
    pub async fn simulator(&self) -> (Child, String) {
        let mut command = self.command(&["simulator", "--listen", "127.0.0.1:0"], "sim");
        command.env("MODELROUTER_SIM_CHUNK_DELAY_MS", "0");
        let (child, line) = self.start(command, "listening").await;
        (child, url_in(&line))
    }

    /// Starts the ledger.
    pub async fn ledger(&self) -> Child {
        self.ledger_probed().await.0
    }

    /// Starts the ledger; returns it and the URL of its probes.
    pub async fn ledger_probed(&self) -> (Child, String) {
        let (child, line) = self
            .start(self.command(&["ledger"], "ledger"), "ledger")
            .await;
        (child, url_in(&line))
    }

    /// A `modelrouter gateway` command on data dir `data`, with OpenAI on
    /// the simulator at `sim` and the bootstrap key [`KEY`].
    pub fn gateway_command(&self, data: &str, sim: &str) -> Command {
        let mut command = self.command(&["gateway"], data);
        command
            .env("MODELROUTER_LISTEN", "127.0.0.1:0")
            .env("MODELROUTER_BOOTSTRAP_KEY", KEY)
            .env("OPENAI_API_KEY", "sim-key")
            .env("OPENAI_BASE_URL", format!("{sim}/openai/v1"));
        command
    }

    /// Starts a `modelrouter gateway` per id (each on its own data dir), on
    /// the simulator at `sim`, with `env` added; returns each process with its URL.
    pub async fn gateways(
        &self,
        ids: &[&str],
        sim: &str,
        env: &[(&str, &str)],
    ) -> Vec<(Child, String)> {
        let mut gateways = Vec::new();
        for id in ids {
            let mut command = self.gateway_command(id, sim);
            command
                .env("MODELROUTER_GATEWAY_ID", id)
                .envs(env.iter().copied());
            let (child, line) = self.start(command, "listening").await;
            gateways.push((child, url_in(&line)));
        }
        gateways
    }

    /// Runs a `modelrouter` command to its end; whether it succeeded, and
    /// its output.
    pub async fn run(&self, args: &[&str]) -> (bool, String) {
        let output = self
            .command(args, "tools")
            .output()
            .await
            .expect("modelrouter runs");
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }
}

/// The URL in a banner line.
pub fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL in the banner")
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .to_owned()
}

/// One `gpt-4.1` chat with [`KEY`]: the status, and the cost when served.
pub async fn chat(http: &reqwest::Client, url: &str, n: usize) -> (u16, Option<Money>) {
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": format!("Request {n}")}]}))
        .send()
        .await;
    let Ok(response) = response else {
        return (0, None);
    };
    let cost = response
        .headers()
        .get("x-model-router-cost")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (response.status().as_u16(), cost)
}

/// Sends SIGTERM to `child` (a graceful stop) and waits for it to exit (bounded).
pub async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}

/// Sends SIGKILL to `child` and reaps it.
pub async fn kill9(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// A fresh directory under the system's temp dir, named for `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("mr-cli-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `modelrouter up`.
pub struct Up {
    pub child: Child,
    /// Its base URL.
    pub url: String,
    /// The API key printed on first start.
    pub printed_key: Option<String>,
    /// Everything printed up to the key line.
    pub banner: String,
}

impl Up {
    /// The operator's admin key printed on first start.
    pub fn operator_key(&self) -> Option<String> {
        self.banner
            .split_whitespace()
            .find(|w| w.starts_with("mr_ak_"))
            .map(str::to_owned)
    }

    /// Sends the process SIGHUP (what an operator does to reload files).
    pub async fn hangup(&self) {
        let pid = self.child.id().expect("the process runs").to_string();
        let status = tokio::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill -HUP {pid}");
    }
}

/// Starts `bin up` on a free port with its data in `data_dir` and `env`
/// added, and reads its banner (bounded: 60 s).
pub async fn up(bin: &str, data_dir: &Path, env: &[(&str, &str)]) -> Up {
    let mut command = Command::new(bin);
    command
        .arg("up")
        .env("MODELROUTER_LISTEN", "127.0.0.1:0")
        .env("MODELROUTER_DATA_DIR", data_dir)
        .env("MODELROUTER_SIM_CHUNK_DELAY_MS", "0")
        .env_remove("MODELROUTER_BOOTSTRAP_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for var in [
        "OPENAI_API_KEY",
        "XAI_API_KEY",
        "GROQ_API_KEY",
        "CEREBRAS_API_KEY",
        "MODELROUTER_CONFIG",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("modelrouter starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("API key") || line.starts_with("Using the API keys") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("banner within 60 s");
    // Keep draining stdout, as a terminal would.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let printed_key = banner
        .split_whitespace()
        .find(|w| w.starts_with("mr_sk_"))
        .map(str::to_owned);
    Up {
        child,
        url,
        printed_key,
        banner,
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !self.nats_url.starts_with("nats://") {
            return;
        }
        let (url, prefix) = (self.nats_url.clone(), self.prefix.clone());
        // A runtime of its own on a thread of its own: `drop` runs inside the
        // test's runtime, which cannot be blocked on from within.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let destroy = async {
                    if let Ok(log) = eventlog::nats::NatsLog::connect(&url, &prefix).await {
                        let _ = log.destroy().await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), destroy).await;
            });
        });
        let _ = cleanup.join();
    }
}
