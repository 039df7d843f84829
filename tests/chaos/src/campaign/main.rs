//! `withings-oauth-chaos`: a fault campaign. Starts the sandbox (strict rotation, an app-wide
//! rate limit, short-lived tokens, its ledger), fleet instances and web instances as OS
//! processes on one PostgreSQL database (a cluster of the campaign's own) or one SQLite file,
//! drives a workload of hundreds of users through them, applies faults on a random schedule
//! drawn from the seed, heals them, lets the system settle, then checks the history, the
//! ledger and the final database. Exits non-zero, printing the seed and the shortest excerpt
//! of the records that shows it, when a property is violated.
//!
//! ```console
//! $ cargo build -p withings-sandbox -p withings-oauth-web-example -p withings-oauth-chaos
//! $ target/debug/withings-oauth-chaos --backend postgres --seed 7 --duration 2m --out target/chaos/pg-7
//! ```

mod pg;
mod procs;
mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use tokio::sync::Mutex;
use withings_oauth::{Credentials, Expected, StoredCredentials, StoredEntry, TokenStore, UserId};
use withings_oauth_chaos::check::{self, FinalEntry, Settings};
use withings_oauth_chaos::history::{self, HistoryWriter, Op, OpKind, Outcome};
use withings_oauth_sql::{SqlOptions, SqlStore};

use procs::{Instance, Kind};
use web::WebUser;

/// The store's keys: the first one encrypts. The key rotation in the middle of a run puts a
/// new one first.
const KEY_1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// The web instances' shared cookie key: 64 bytes, base64.
const COOKIE_KEY: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
/// The application's users' password (they are test users of a throwaway database).
const WEB_PASSWORD: &str = "chaos-web-password";

/// The sandbox's limit: requests a minute for the application.
const SANDBOX_LIMIT: u32 = 1_200;
/// The fleets' shared budget: the limit less what the web tier may send (its flows are paced
/// to at most [`WEB_FLOWS_PER_MINUTE`], three requests each at most) and less the bursts the
/// fleets may add when their shared bucket fails over to each instance's share and back (a
/// twelfth of the budget each way).
const FLEET_BUDGET: u32 = 840;
const WEB_FLOWS_PER_MINUTE: u64 = 40;
/// Access tokens live this long at the sandbox (seconds); the fleets refresh 30 s before.
const ACCESS_LIFETIME: u64 = 120;
/// The store's lease: a frozen holder is waited for this long at most.
const LEASE_MS: u64 = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Postgres,
    Sqlite,
}

/// Runs a fault campaign and checks it.
#[derive(Parser, Debug)]
#[command(name = "withings-oauth-chaos", version, about)]
struct Args {
    /// The shared database.
    #[arg(long, value_enum, required_unless_present = "recheck")]
    backend: Option<Backend>,
    /// The seed of the fault schedule and the workload: the same seed, the same schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long faults are applied: `90s`, `2m`, `30m`, `1h`.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    duration: Duration,
    /// The quiet time after the last fault healed, before the checks.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    quiet: Duration,
    /// The bound checked: every user with a live grant gets a token within this time after
    /// the last fault healed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    recovery_bound: Duration,
    /// Where the history, the ledger, the logs and the report go (emptied first).
    #[arg(long, required_unless_present = "recheck")]
    out: Option<PathBuf>,
    /// Only check the records of an earlier run's directory again (its `--out`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["backend", "out"])]
    recheck: Option<PathBuf>,
    /// Users the fleets serve, logged in at the start.
    #[arg(long, default_value_t = 240)]
    fleet_users: u32,
    /// Users who log in and out through the web instances (the fleets serve them too).
    #[arg(long, default_value_t = 60)]
    web_users: u32,
    /// Fleet instances.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    fleets: u32,
    /// Web instances.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    webs: u32,
    /// Where the binaries are (default: beside this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// What the fleet and web instances log (`RUST_LOG`), to their logs in `logs/`: more than
    /// warnings to follow a violation step by step, e.g.
    /// `warn,withings_oauth::session=debug,withings_oauth_sql=debug`.
    #[arg(long, default_value = "warn")]
    log: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| "a duration is a number and a unit: 90s, 2m, 1h".to_owned())?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err("the unit is s, m or h".into()),
    };
    Ok(Duration::from_secs(secs))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// libfaketime's preload library, from Debian's `faketime` package.
fn faketime_library() -> Result<PathBuf, String> {
    for dir in [
        "/usr/lib/x86_64-linux-gnu/faketime",
        "/usr/lib/aarch64-linux-gnu/faketime",
        "/usr/lib/faketime",
    ] {
        let lib = Path::new(dir).join("libfaketimeMT.so.1");
        if lib.exists() {
            return Ok(lib);
        }
    }
    Err(
        "libfaketime is missing: install Debian's `faketime` package (apt-get install faketime)"
            .into(),
    )
}

/// The kinds of faults, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKind {
    Kill,
    Stop,
    PgRestart,
    PgTerminate,
    Skew,
    Sandbox,
    WritesFail,
}

struct Campaign {
    args: Args,
    dir: PathBuf,
    history: Arc<HistoryWriter>,
    instances: Vec<Arc<Mutex<Instance>>>,
    cluster: Option<pg::Cluster>,
    database: String,
    sandbox: url::Url,
    faketime: PathBuf,
    keys: Arc<std::sync::Mutex<String>>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let seed = args.seed;
    // Interrupted, the run is dropped: its processes are killed (`kill_on_drop`) and its
    // PostgreSQL cluster stopped and removed (`Cluster`'s `Drop`).
    let interrupted = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let outcome = tokio::select! {
        outcome = run(args) => outcome,
        () = interrupted => Err("interrupted".to_owned()),
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("campaign FAILED with seed {seed}: rerun with --seed {seed}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("withings-oauth-chaos (seed {seed}): {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    if let Some(dir) = &args.recheck {
        return check_dir(dir, &format!("records of {}", dir.display()));
    }
    let dir = args.out.clone().ok_or("--out is required")?;
    let backend = args.backend.ok_or("--backend is required")?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = dir.canonicalize().map_err(|e| e.to_string())?;
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .ok_or("no directory of the binary")?
            .to_owned(),
    };
    for bin in [
        "withings-sandbox",
        "withings-web-example",
        "withings-oauth-chaos-fleet",
    ] {
        if !bin_dir.join(bin).exists() {
            return Err(format!(
                "{bin} is not in {}: cargo build -p withings-sandbox -p withings-oauth-web-example -p withings-oauth-chaos",
                bin_dir.display()
            ));
        }
    }
    let faketime = faketime_library()?;
    let history = Arc::new(
        HistoryWriter::open(&dir.join("history-campaign.jsonl")).map_err(|e| e.to_string())?,
    );
    println!(
        "campaign: backend {:?}, seed {}, {} s of faults, out {}",
        backend,
        args.seed,
        args.duration.as_secs(),
        dir.display()
    );

    // The database.
    let (cluster, database) = match backend {
        Backend::Postgres => {
            let cluster = pg::Cluster::start(free_port()?).await?;
            let url = cluster.url();
            (Some(cluster), url)
        }
        Backend::Sqlite => {
            let file = dir.join("store.db");
            (None, format!("sqlite://{}", file.display()))
        }
    };

    // The sandbox.
    let total_users = args.fleet_users + args.web_users;
    let mut sandbox = Instance::new(
        "sandbox",
        Kind::Sandbox,
        bin_dir.join("withings-sandbox"),
        vec![
            "--admin".into(),
            "--strict-rotation".into(),
            format!("--users={total_users}"),
            format!("--access-token-lifetime={ACCESS_LIFETIME}"),
            "--code-lifetime=120".into(),
            format!("--rate-limit={SANDBOX_LIMIT}"),
            "--rate-limit-window=60".into(),
            format!("--ledger={}", dir.join(check::LEDGER_FILE).display()),
        ],
        vec![("RUST_LOG".into(), "withings_sandbox=warn".into())],
        &dir,
    );
    sandbox.start(&[]).await?;
    let sandbox_url = sandbox.base.clone().ok_or("the sandbox's address")?;

    let mut campaign = Campaign {
        args,
        dir: dir.clone(),
        history: history.clone(),
        instances: Vec::new(),
        cluster,
        database,
        sandbox: sandbox_url,
        faketime,
        keys: Arc::new(std::sync::Mutex::new(KEY_1.to_owned())),
    };
    let result = campaign.execute(&bin_dir).await;
    for instance in &campaign.instances {
        instance
            .lock()
            .await
            .stop_gracefully(Duration::from_secs(3))
            .await;
    }
    sandbox.stop_gracefully(Duration::from_secs(3)).await;
    let verdict = match result {
        Ok(()) => campaign.check().await,
        Err(e) => Err(e),
    };
    if let Some(mut cluster) = campaign.cluster.take() {
        cluster.destroy();
    }
    verdict
}

impl Campaign {
    fn store_options(&self) -> Result<SqlOptions, String> {
        let keys = self.keys.lock().map_err(|_| "keys")?.clone();
        Ok(SqlOptions::default()
            .keys(withings_oauth_sql::Keyring::parse(&keys).map_err(|e| e.to_string())?)
            .lease_ttl(Duration::from_millis(LEASE_MS)))
    }

    async fn execute(&mut self, bin_dir: &Path) -> Result<(), String> {
        let args = &self.args;
        // Log the fleets' users in, straight into the store.
        let store = SqlStore::connect(&self.database, self.store_options()?)
            .await
            .map_err(|e| format!("opening the store: {e}"))?;
        seed_logins(&store, &self.sandbox, args.fleet_users, &self.history).await?;
        // The web users, as the application's users.
        let web_users: Vec<WebUser> = (1..=args.web_users)
            .map(|i| WebUser {
                name: format!("chaos-web-{i}"),
                password: WEB_PASSWORD.into(),
                number: args.fleet_users + i,
            })
            .collect();
        {
            let shared = withings_oauth_web_example::Shared::open(
                &self.database,
                self.store_options()?,
                withings_oauth::chrono::TimeDelta::minutes(10),
            )
            .await
            .map_err(|e| format!("opening the web example's database: {e}"))?;
            for user in &web_users {
                shared
                    .users
                    .add(&user.name, &user.password)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        drop(store);

        // The instances.
        let total = args.fleet_users + args.web_users;
        let fleets = args.fleets;
        for i in 1..=fleets {
            let name = format!("fleet-{i}");
            let env = vec![
                ("CHAOS_INSTANCE".into(), name.clone()),
                ("CHAOS_DATABASE".into(), self.database.clone()),
                ("CHAOS_SANDBOX".into(), self.sandbox.to_string()),
                (
                    "CHAOS_FIRST_USER".into(),
                    withings_sandbox::User::numbered(1).userid.to_string(),
                ),
                (
                    "CHAOS_LAST_USER".into(),
                    withings_sandbox::User::numbered(total).userid.to_string(),
                ),
                ("CHAOS_BUDGET".into(), FLEET_BUDGET.to_string()),
                ("CHAOS_INSTANCES".into(), fleets.to_string()),
                ("CHAOS_LEASE_MS".into(), LEASE_MS.to_string()),
                ("CHAOS_WORKERS".into(), "24".into()),
                ("CHAOS_SKEW_MS".into(), "0".into()),
                (
                    "CHAOS_SEED".into(),
                    (args.seed * 100 + u64::from(i)).to_string(),
                ),
                ("CHAOS_INDEX".into(), i.to_string()),
                (
                    "CHAOS_FIRST_WEB_USER".into(),
                    withings_sandbox::User::numbered(args.fleet_users + 1)
                        .userid
                        .to_string(),
                ),
                ("RUST_LOG".into(), args.log.clone()),
            ];
            let instance = Instance::new(
                &name,
                Kind::Fleet,
                bin_dir.join("withings-oauth-chaos-fleet"),
                vec![],
                env,
                &self.dir,
            );
            self.instances.push(Arc::new(Mutex::new(instance)));
        }
        for i in 0..args.webs {
            let name = format!("web-{i}");
            let port = free_port()?;
            let env = vec![
                (
                    "WITHINGS_CLIENT_ID".into(),
                    withings_sandbox::DEFAULT_CLIENT_ID.into(),
                ),
                (
                    "WITHINGS_CLIENT_SECRET".into(),
                    withings_sandbox::DEFAULT_CLIENT_SECRET.into(),
                ),
                (
                    "WITHINGS_REDIRECT_URI".into(),
                    format!("http://127.0.0.1:{port}/callback"),
                ),
                ("WITHINGS_BASE_URL".into(), self.sandbox.to_string()),
                ("WITHINGS_WEB_COOKIE_KEY".into(), COOKIE_KEY.into()),
                ("WITHINGS_WEB_DEMO_ACCOUNTS".into(), "false".into()),
                ("RUST_LOG".into(), args.log.clone()),
            ];
            let instance = Instance::new(
                &name,
                Kind::Web,
                bin_dir.join("withings-web-example"),
                vec![
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--database".into(),
                    self.database.clone(),
                ],
                env,
                &self.dir,
            );
            self.instances.push(Arc::new(Mutex::new(instance)));
        }
        for instance in &self.instances {
            let keys = self.key_env()?;
            instance.lock().await.start(&keys).await?;
        }

        // The web workload, until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let webs: Vec<Arc<Mutex<Instance>>> = self
            .instances
            .iter()
            .filter(|i| i.try_lock().is_ok_and(|i| i.kind == Kind::Web))
            .cloned()
            .collect();
        let driver = tokio::spawn(web_workload(
            webs,
            web_users,
            self.history.clone(),
            stop.clone(),
            self.args.seed,
        ));

        // Faults.
        self.faults().await?;
        // Heal everything: every instance running and thawed, no sandbox fault left. The web
        // workload ends first, so that every grant exists when the quiet time starts.
        stop.store(true, Ordering::SeqCst);
        let _ = driver.await;
        self.heal().await?;
        let healed = Op::start(OpKind::Healed, "campaign").end(Outcome::Ok);
        self.history.record(&healed);
        println!(
            "campaign: every fault healed; {} s of quiet",
            self.args.quiet.as_secs()
        );
        tokio::time::sleep(self.args.quiet).await;
        Ok(())
    }

    fn key_env(&self) -> Result<Vec<(String, String)>, String> {
        Ok(vec![(
            "WITHINGS_STORE_KEYS".into(),
            self.keys.lock().map_err(|_| "keys")?.clone(),
        )])
    }

    async fn faults(&mut self) -> Result<(), String> {
        let mut rng = StdRng::seed_from_u64(self.args.seed);
        let started = tokio::time::Instant::now();
        let end = started + self.args.duration;
        let mut rotated = false;
        let mut kinds = vec![FaultKind::Kill, FaultKind::Stop, FaultKind::Sandbox];
        match self.backend() {
            // A clock skewed by minutes: only where instances may run on several machines.
            // The processes of one SQLite file share one machine, and its leases and rate
            // limit have no clock but theirs (docs/reliability.md, "Known limits").
            Backend::Postgres => kinds.extend([
                FaultKind::PgRestart,
                FaultKind::PgTerminate,
                FaultKind::Skew,
            ]),
            Backend::Sqlite => kinds.push(FaultKind::WritesFail),
        }
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..6_000))).await;
            if tokio::time::Instant::now() >= end {
                break;
            }
            if !rotated && tokio::time::Instant::now() >= started + self.args.duration / 2 {
                rotated = true;
                self.rotate_keys().await?;
                continue;
            }
            let kind = kinds[rng.random_range(0..kinds.len())];
            let name = self.fault(kind, &mut rng).await?;
            *counts.entry(name).or_default() += 1;
        }
        println!("campaign: faults applied: {counts:?}");
        Ok(())
    }

    fn pick(&self, rng: &mut StdRng, kind: Option<Kind>) -> Arc<Mutex<Instance>> {
        let candidates: Vec<&Arc<Mutex<Instance>>> = self
            .instances
            .iter()
            .filter(|i| kind.is_none_or(|k| i.try_lock().is_ok_and(|i| i.kind == k)))
            .collect();
        candidates[rng.random_range(0..candidates.len())].clone()
    }

    /// Applies one fault and heals it; answers its name.
    async fn fault(&mut self, kind: FaultKind, rng: &mut StdRng) -> Result<String, String> {
        match kind {
            FaultKind::Kill => {
                let target = self.pick(rng, None);
                let mut instance = target.lock().await;
                let op = Op::start(OpKind::Fault, &instance.name).detail("kill");
                instance.kill().await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..3_000))).await;
                instance.start(&self.key_env()?).await?;
                self.history.record(&op.end(Outcome::Ok));
                Ok("kill".into())
            }
            FaultKind::Stop => {
                let target = self.pick(rng, None);
                let mut instance = target.lock().await;
                let op = Op::start(OpKind::Fault, &instance.name).detail("stop");
                instance.freeze()?;
                // Longer than a lease.
                tokio::time::sleep(Duration::from_millis(
                    rng.random_range(LEASE_MS + 1_000..LEASE_MS + 8_000),
                ))
                .await;
                instance.thaw()?;
                self.history.record(&op.end(Outcome::Ok));
                Ok("stop".into())
            }
            FaultKind::PgRestart => {
                let op = Op::start(OpKind::Fault, "postgres").detail("pg_restart");
                let cluster = self.cluster.as_ref().ok_or("no cluster")?;
                cluster.restart()?;
                self.history.record(&op.end(Outcome::Ok));
                Ok("pg_restart".into())
            }
            FaultKind::PgTerminate => {
                let op = Op::start(OpKind::Fault, "postgres").detail("pg_terminate_backend");
                let cluster = self.cluster.as_ref().ok_or("no cluster")?;
                let n = cluster.terminate_connections().await?;
                self.history.record(
                    &op.end(Outcome::Ok)
                        .detail(format!("pg_terminate_backend {n}")),
                );
                Ok("pg_terminate_backend".into())
            }
            FaultKind::Skew => {
                let target = self.pick(rng, Some(Kind::Fleet));
                let minutes: i64 = [-7, -3, 3, 7][rng.random_range(0..4)];
                let mut instance = target.lock().await;
                let op = Op::start(OpKind::Fault, &instance.name)
                    .detail(format!("kill+skew {minutes:+} min"));
                instance.kill().await;
                let mut env = self.key_env()?;
                env.push(("LD_PRELOAD".into(), self.faketime.display().to_string()));
                env.push(("FAKETIME".into(), format!("{:+}s", minutes * 60)));
                env.push(("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()));
                env.push(("FAKETIME_NO_CACHE".into(), "1".into()));
                env.push(("CHAOS_SKEW_MS".into(), (minutes * 60_000).to_string()));
                instance.start(&env).await?;
                drop(instance);
                tokio::time::sleep(Duration::from_millis(rng.random_range(10_000..25_000))).await;
                let mut instance = target.lock().await;
                instance.kill().await;
                instance.start(&self.key_env()?).await?;
                self.history.record(&op.end(Outcome::Ok));
                Ok("skew".into())
            }
            FaultKind::Sandbox => {
                let (fault, extra) = match rng.random_range(0..5) {
                    // Slow, but within the requests' time (the lease's, less its slack): an
                    // answer later than that is a lost answer, which strict rotation punishes
                    // whatever a client does. The web instances' leases are the SQL store's
                    // default, 2 s renewed every 0.5 s: a request gets at least 1.25 s.
                    0 => ("delay", Some(rng.random_range(200..900u64))),
                    1 => ("drop", None),
                    2 => ("http500", None),
                    3 => ("601", None),
                    _ => ("html", None),
                };
                let endpoint = if rng.random_bool(0.6) {
                    "v2/oauth2"
                } else {
                    "measure"
                };
                let times = rng.random_range(3..30u32);
                let op = Op::start(OpKind::Fault, "sandbox")
                    .detail(format!("{fault} x{times} on {endpoint}"));
                let mut body =
                    serde_json::json!({ "endpoint": endpoint, "fault": fault, "times": times });
                if let Some(ms) = extra {
                    body["delay_ms"] = ms.into();
                }
                let http = reqwest::Client::new();
                let url = self
                    .sandbox
                    .join("admin/faults")
                    .map_err(|e| e.to_string())?;
                http.post(url.clone())
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..8_000))).await;
                http.delete(url).send().await.map_err(|e| e.to_string())?;
                self.history.record(&op.end(Outcome::Ok));
                Ok(format!("sandbox {fault}"))
            }
            FaultKind::WritesFail => {
                let target = self.pick(rng, Some(Kind::Fleet));
                let instance = target.lock().await;
                let pid = instance.raw_pid().ok_or("not running")?;
                let op =
                    Op::start(OpKind::Fault, &instance.name).detail("writes fail (RLIMIT_FSIZE)");
                prlimit(pid, "1")?;
                tokio::time::sleep(Duration::from_millis(rng.random_range(3_000..10_000))).await;
                prlimit(pid, "unlimited")?;
                self.history.record(&op.end(Outcome::Ok));
                Ok("writes fail".into())
            }
        }
    }

    /// A new key first, the old one still read; every instance restarted with it, one at a
    /// time.
    async fn rotate_keys(&mut self) -> Result<(), String> {
        let op = Op::start(OpKind::KeyRotation, "campaign");
        *self.keys.lock().map_err(|_| "keys")? = format!("{KEY_2},{KEY_1}");
        for target in self.instances.clone() {
            let mut instance = target.lock().await;
            let restart = Op::start(OpKind::Fault, &instance.name).detail("kill (key rotation)");
            instance.kill().await;
            instance.start(&self.key_env()?).await?;
            self.history.record(&restart.end(Outcome::Ok));
        }
        self.history.record(&op.end(Outcome::Ok));
        println!("campaign: keys rotated");
        Ok(())
    }

    async fn heal(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let url = self
            .sandbox
            .join("admin/faults")
            .map_err(|e| e.to_string())?;
        http.delete(url).send().await.map_err(|e| e.to_string())?;
        for target in self.instances.clone() {
            let mut instance = target.lock().await;
            if instance.stopped {
                instance.thaw()?;
            }
            if !instance.running() {
                let op = Op::start(OpKind::Fault, &instance.name).detail("kill (had exited)");
                instance.kill().await;
                instance.start(&self.key_env()?).await?;
                self.history.record(&op.end(Outcome::Ok));
            }
        }
        Ok(())
    }

    /// Writes the final database and the settings beside the records, then checks them.
    async fn check(&self) -> Result<bool, String> {
        // The final database, read with the keys in use at the end.
        let store = SqlStore::connect(&self.database, self.store_options()?)
            .await
            .map_err(|e| format!("opening the final store: {e}"))?;
        let mut final_db = BTreeMap::new();
        for i in 1..=(self.args.fleet_users + self.args.web_users) {
            let user = withings_sandbox::User::numbered(i).userid;
            let entry = store
                .load(UserId::new(user))
                .await
                .map_err(|e| format!("reading the final store: {e}"))?;
            match entry.map(|e| e.entry) {
                Some(StoredEntry::Credentials(c)) => {
                    let refresh = history::hash(&c.reveal_for_storage().refresh_token);
                    final_db.insert(user, FinalEntry::Credentials { refresh });
                }
                Some(_) => {
                    final_db.insert(user, FinalEntry::LoginRequired);
                }
                None => {}
            }
        }
        let settings = Settings {
            rate_limit: SANDBOX_LIMIT as usize,
            rate_window_ms: 60_000,
            recovery_bound_ms: u64::try_from(self.args.recovery_bound.as_millis())
                .unwrap_or(u64::MAX),
            in_flight_ms: 5_000,
            secrets: vec![
                withings_sandbox::DEFAULT_CLIENT_SECRET.into(),
                COOKIE_KEY.into(),
                KEY_1
                    .split_once(':')
                    .map(|(_, k)| k.to_owned())
                    .unwrap_or_default(),
                KEY_2
                    .split_once(':')
                    .map(|(_, k)| k.to_owned())
                    .unwrap_or_default(),
            ],
        };
        let write = |name: &str, value: serde_json::Value| {
            std::fs::write(self.dir.join(name), value.to_string()).map_err(|e| e.to_string())
        };
        write(
            check::FINAL_DB_FILE,
            serde_json::to_value(&final_db).map_err(|e| e.to_string())?,
        )?;
        write(
            check::SETTINGS_FILE,
            serde_json::to_value(&settings).map_err(|e| e.to_string())?,
        )?;
        let header = format!(
            "seed {}, backend {:?}, {} s of faults + {} s quiet",
            self.args.seed,
            self.backend(),
            self.args.duration.as_secs(),
            self.args.quiet.as_secs(),
        );
        check_dir(&self.dir, &header)
    }

    fn backend(&self) -> Backend {
        self.args.backend.unwrap_or(Backend::Postgres)
    }
}

/// Checks the records of a run's directory, prints the report and writes it to
/// `report.txt`; `true` if every property holds.
fn check_dir(dir: &Path, header: &str) -> Result<bool, String> {
    let run = check::read_run(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let report = check::check(
        &run.ops,
        &run.ledger,
        &run.final_db,
        &run.logs,
        &run.settings,
    );
    let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for op in &run.ops {
        let name = match op.op {
            OpKind::Fault => format!("fault {}", check::fault_kind(op)),
            kind => format!("{kind:?}").to_lowercase(),
        };
        let entry = by_kind.entry(name).or_default();
        entry.0 += 1;
        if op.outcome == Outcome::Ok {
            entry.1 += 1;
        }
    }
    let mut text = format!(
        "{header}; {} operations ({} torn lines), {} ledger events\n\noperations and faults (total, ok):\n",
        run.ops.len(),
        run.torn,
        run.ledger.len()
    );
    for (name, (total, ok)) in &by_kind {
        text.push_str(&format!("  {name:<28} {total:>8} {ok:>8}\n"));
    }
    text.push_str(&format!("\n{report}"));
    if !report.passed() {
        text.push_str(&format!("\nFAILED: {header}\n"));
    }
    println!("{text}");
    std::fs::write(dir.join("report.txt"), &text).map_err(|e| e.to_string())?;
    Ok(report.passed())
}

fn prlimit(pid: u32, bytes: &str) -> Result<(), String> {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        // The soft limit only: lowering and raising it again needs no privilege.
        .arg(format!("--fsize={bytes}:"))
        .status()
        .map_err(|e| format!("prlimit: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("prlimit failed: {status}"))
    }
}

/// Logs the first `count` numbered users in at the sandbox and stores their logins.
async fn seed_logins(
    store: &SqlStore,
    sandbox: &url::Url,
    count: u32,
    history: &HistoryWriter,
) -> Result<(), String> {
    let op = Op::start(OpKind::Seed, "campaign");
    let url = sandbox.join("admin/logins").map_err(|e| e.to_string())?;
    let answer: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({ "count": count, "scope": "user.metrics,user.activity" }))
        .send()
        .await
        .map_err(|e| format!("minting logins: {e}"))?
        .json()
        .await
        .map_err(|e| format!("minting logins: {e}"))?;
    let logins = answer["logins"].as_array().ok_or("no logins minted")?;
    for login in logins {
        let field = |k: &str| {
            login[k]
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("no {k}"))
        };
        let user = login["userid"].as_u64().ok_or("no userid")?;
        let expires = login["expires_at"].as_i64().ok_or("no expires_at")?;
        let stored = StoredCredentials {
            format: StoredCredentials::FORMAT,
            user_id: UserId::new(user),
            access_token: field("access_token")?,
            refresh_token: field("refresh_token")?,
            expires_at: withings_oauth::chrono::DateTime::from_timestamp(expires, 0)
                .ok_or("a bad expiry")?,
            scopes: field("scope")?.parse().map_err(|_| "bad scopes")?,
            token_type: "Bearer".into(),
        };
        let credentials = Credentials::from_stored(stored).map_err(|e| e.to_string())?;
        store
            .save(UserId::new(user), &credentials, Expected::Absent)
            .await
            .map_err(|e| format!("storing a login: {e}"))?;
        let mut done = op.clone().user(user).end(Outcome::Ok);
        done.done = Some(history::now_ms());
        history.record(&done);
    }
    Ok(())
}

/// Logins (70 %, one in three with fewer scopes), logouts (15 %) and home pages (15 %) of
/// random web users on random web instances, at most [`WEB_FLOWS_PER_MINUTE`].
async fn web_workload(
    webs: Vec<Arc<Mutex<Instance>>>,
    users: Vec<WebUser>,
    history: Arc<HistoryWriter>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let pace = Duration::from_millis(60_000 / WEB_FLOWS_PER_MINUTE);
    let busy: Arc<std::sync::Mutex<std::collections::HashSet<u32>>> = Arc::default();
    let mut flows = tokio::task::JoinSet::new();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(pace).await;
        let user = users[rng.random_range(0..users.len())].clone();
        if !busy
            .lock()
            .map(|mut b| b.insert(user.number))
            .unwrap_or(false)
        {
            continue;
        }
        let target = webs[rng.random_range(0..webs.len())].clone();
        let (name, base) = {
            let instance = target.lock().await;
            (instance.name.clone(), instance.base.clone())
        };
        let Some(base) = base else { continue };
        let roll = rng.random_range(0..100);
        let scopes: &'static [&'static str] = if rng.random_bool(0.33) {
            &["user.metrics"]
        } else {
            &[
                "user.info",
                "user.metrics",
                "user.activity",
                "user.sleepevents",
            ]
        };
        let (history, busy) = (history.clone(), busy.clone());
        flows.spawn(async move {
            let (kind, result) = if roll < 70 {
                (OpKind::Login, None)
            } else if roll < 85 {
                (OpKind::Logout, None)
            } else {
                (OpKind::Read, Some(()))
            };
            let op = Op::start(kind, &name).user(user.userid());
            let outcome = match (kind, result) {
                (OpKind::Login, _) => web::login(&base, &user, scopes).await,
                (OpKind::Logout, _) => web::logout(&base, &user).await,
                _ => web::home(&base, &user).await,
            };
            // Home pages are not reads of a version: recorded as data calls.
            let mut op = op;
            if kind == OpKind::Read {
                op.op = OpKind::Data;
            }
            let op = match outcome {
                Ok(()) => op.end(Outcome::Ok),
                Err(e) if e.contains("timeout") || e.contains("transport") => op.detail(e),
                Err(e) => op.end(Outcome::Failed).detail(e),
            };
            history.record(&op);
            if let Ok(mut b) = busy.lock() {
                b.remove(&user.number);
            }
        });
        while flows.try_join_next().is_some() {}
    }
    while flows.join_next().await.is_some() {}
}
