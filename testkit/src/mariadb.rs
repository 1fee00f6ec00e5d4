//! A real MariaDB primary and replica for tests, started by the project's own
//! `loadgen/stack/mariadb.sh` on free ports in a state directory of the test's own, and purged (both
//! servers stopped by the script, the directory deleted) when the `Pair` is dropped, also on failure.
//! Every command is bounded in time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::tools::free_port;
use crate::tools::run_bounded;

/// The stack's MariaDB script (loadgen/stack/mariadb.sh).
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../loadgen/stack/mariadb.sh");
/// Bound on one run of the script (a fresh pair takes 1-5 s here; its own waits are bounded by
/// CORELB_STACK_TIMEOUT, set below this).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
/// The script's own bound on each of its waits (CORELB_STACK_TIMEOUT), in seconds.
pub const SCRIPT_INNER_TIMEOUT_SECS: &str = "60";
/// The check account the script creates on both servers (its defaults, as in configs/mysql.toml).
pub const CHECK_USER: &str = "corelb_check";
pub const CHECK_PASSWORD: &str = "corelb_check";
/// The app account (the script's defaults): SELECT and INSERT on corelb.*, no SUPER.
pub const APP_USER: &str = "corelb";
pub const APP_PASSWORD: &str = "corelb";

pub struct Pair {
    pub dir: PathBuf,
    pub primary: SocketAddr,
    pub replica: SocketAddr,
    /// The check account the script creates (`CORELB_CHECK_USER`/`CORELB_CHECK_PASSWORD`).
    pub check_user: String,
    pub check_password: String,
}

impl Pair {
    /// Creates and starts a pair named `name` (part of its state directory), replicating.
    pub fn up(name: &str) -> Pair {
        Self::up_with_check_account(name, CHECK_USER, CHECK_PASSWORD)
    }

    /// Like `up`, with the check account named `user` (to exercise the script's variables).
    pub fn up_with_check_account(name: &str, user: &str, password: &str) -> Pair {
        let (p, r) = (free_port(), free_port());
        assert_ne!(p, r);
        // Short: the unix socket path inside must stay under 107 bytes.
        let pair = Pair {
            dir: PathBuf::from(format!("/tmp/corelb-{name}{}", std::process::id())),
            primary: SocketAddr::from(([127, 0, 0, 1], p)),
            replica: SocketAddr::from(([127, 0, 0, 1], r)),
            check_user: user.to_owned(),
            check_password: password.to_owned(),
        };
        pair.script_ok(&["up"]);
        pair
    }

    /// A global status counter of `server`.
    pub fn counter(&self, server: &str, name: &str) -> u64 {
        let out = self.sql(server, &format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        out.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("status {name}: {out:?}"))
    }

    pub fn script(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT)
            .args(args)
            .env("CORELB_STACK_DIR", &self.dir)
            .env("CORELB_PRIMARY_PORT", self.primary.port().to_string())
            .env("CORELB_REPLICA_PORT", self.replica.port().to_string())
            .env("CORELB_CHECK_USER", &self.check_user)
            .env("CORELB_CHECK_PASSWORD", &self.check_password)
            .env("CORELB_SEED_ROWS", "10")
            .env("CORELB_STACK_TIMEOUT", SCRIPT_INNER_TIMEOUT_SECS);
        let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT);
        eprintln!(
            "mariadb.sh {} (exit {:?}):\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn script_ok(&self, args: &[&str]) {
        assert!(
            self.script(args).status.success(),
            "mariadb.sh {args:?} failed"
        );
    }

    /// Runs SQL as root over `server`'s unix socket ("primary" or "replica"); panics on failure.
    pub fn sql(&self, server: &str, sql: &str) -> String {
        let cnf = self.dir.join(server).join("my.cnf");
        let mut cmd = Command::new("mariadb");
        cmd.arg(format!("--defaults-file={}", cnf.display()))
            .args([
                "-uroot",
                "--batch",
                "--skip-column-names",
                "--connect-timeout=5",
                "-e",
            ])
            .arg(sql);
        let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT);
        assert!(
            out.status.success(),
            "{sql} on {server}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs SQL as the app user in database `corelb` over TCP to 127.0.0.1:`port` (a server or a
    /// corelb frontend in front of one). Err: the client's error output.
    pub fn app_sql_via(&self, port: u16, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new("mariadb");
        cmd.args(["--no-defaults", "--protocol=TCP", "-h127.0.0.1"])
            .arg(format!("-P{port}"))
            .arg(format!("-u{APP_USER}"))
            .arg(format!("-p{APP_PASSWORD}"))
            .args([
                "--batch",
                "--skip-column-names",
                "--connect-timeout=5",
                "-e",
            ])
            .arg(sql)
            .arg("corelb");
        let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.script(&["purge"]);
    }
}
