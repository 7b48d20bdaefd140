//! Commands answered by the running services over D-Bus: backup jobs and their history,
//! alerts, and the service-mode forms of backup, snapshots, restore and verify.

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::cli::{AlertCmd, BackupArgs, Global, JobCmd, RestoreArgs, SnapshotsArgs, VerifyArgs};
use crate::output::{print_json, rfc3339_ns, size};
use crate::service::{job_json, job_line, Client, ALERT, BACKUP_JOB, JOB, MANAGER, ROOT, SNAPSHOT};
use crate::Outcome;

fn s(p: &serde_json::Map<String, Value>, k: &str) -> String {
    p.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn n(p: &serde_json::Map<String, Value>, k: &str) -> u64 {
    p.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn usec_time(us: u64) -> String {
    if us == 0 {
        "-".into()
    } else {
        rfc3339_ns(us as i64 * 1000)
    }
}

pub fn job(g: &Global, cmd: &JobCmd) -> Result<Outcome> {
    let c = Client::require(g)?;
    match cmd {
        JobCmd::List => {
            let defs = c.list(BACKUP_JOB)?;
            if g.json {
                print_json(&Value::Array(
                    defs.into_iter().map(|(p, v)| job_json(&p, v)).collect(),
                ));
            } else {
                outln!("{:<20} {:<22} {:<35} LAST", "JOB", "SCHEDULE", "NEXT RUN");
                for (_, p) in defs {
                    outln!(
                        "{:<20} {:<22} {:<35} {}",
                        s(&p, "Name"),
                        s(&p, "Schedule"),
                        usec_time(n(&p, "NextRun")),
                        s(&p, "LastStatus")
                    );
                }
            }
            Ok(Outcome::Ok)
        }
        JobCmd::Start { name, no_wait } => {
            let path = c.start(ROOT, MANAGER, "StartBackupJob", &(name.as_str(),))?;
            follow(&c, g, &path, *no_wait)
        }
        JobCmd::History { limit } => {
            let mut jobs = c.list(JOB)?;
            jobs.sort_by_key(|(_, p)| n(p, "Id"));
            let start = jobs.len().saturating_sub(*limit);
            let jobs = &jobs[start..];
            if g.json {
                print_json(&Value::Array(
                    jobs.iter().map(|(p, v)| job_json(p, v.clone())).collect(),
                ));
            } else {
                for (path, p) in jobs {
                    outln!("{}", job_line(path, p));
                }
            }
            Ok(Outcome::Ok)
        }
        JobCmd::Show { id } => {
            let path = format!("{ROOT}/jobs/{id}");
            let p = c.props(&path, JOB)?;
            if g.json {
                print_json(&job_json(&path, p));
            } else {
                for (k, v) in &p {
                    outln!("{k:<17} {v}");
                }
            }
            Ok(Outcome::Ok)
        }
        JobCmd::Cancel { id } => {
            c.call(&format!("{ROOT}/jobs/{id}"), JOB, "Cancel", &())?;
            if !g.quiet && !g.json {
                outln!("cancel requested for job {id}");
            }
            Ok(Outcome::Ok)
        }
    }
}

/// Prints the job's path, waits for it unless told not to, and maps its status to the exit code.
fn follow(c: &Client, g: &Global, path: &str, no_wait: bool) -> Result<Outcome> {
    if no_wait {
        if g.json {
            print_json(&json!({ "path": path }));
        } else {
            outln!("{path}");
        }
        return Ok(Outcome::Ok);
    }
    let p = c.wait(path, !g.quiet && !g.json)?;
    let status = s(&p, "Status");
    if g.json {
        print_json(&job_json(path, p.clone()));
    } else if !g.quiet {
        outln!("{}", job_line(path, &p));
        for w in p
            .get("Warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            outln!("  warning: {}", w.as_str().unwrap_or_default());
        }
    }
    match status.as_str() {
        "success" => Ok(Outcome::Ok),
        "warnings" => Ok(Outcome::Warnings),
        _ => bail!("job {path} {status}: {}", s(&p, "Message")),
    }
}

pub fn alert(g: &Global, cmd: &AlertCmd) -> Result<Outcome> {
    let c = Client::require(g)?;
    match cmd {
        AlertCmd::List { all } => {
            let alerts: Vec<_> = c
                .list(ALERT)?
                .into_iter()
                .filter(|(_, p)| *all || p.get("Active").and_then(Value::as_bool).unwrap_or(false))
                .collect();
            if g.json {
                print_json(&Value::Array(
                    alerts.into_iter().map(|(p, v)| job_json(&p, v)).collect(),
                ));
            } else {
                for (_, p) in alerts {
                    let ack = if p
                        .get("Acknowledged")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                    {
                        format!(" (ack: {})", s(&p, "AcknowledgedBy"))
                    } else {
                        String::new()
                    };
                    outln!(
                        "{:>6}  sev {:>2} {:<6} {:<20} {}{ack}",
                        n(&p, "Id"),
                        n(&p, "Severity"),
                        s(&p, "Priority"),
                        s(&p, "Class"),
                        s(&p, "Summary")
                    );
                }
            }
            Ok(Outcome::Ok)
        }
        AlertCmd::Ack { id, comment } => {
            c.call(
                &format!("{ROOT}/alerts/{id}"),
                ALERT,
                "Acknowledge",
                &(comment.as_str(),),
            )?;
            if !g.quiet && !g.json {
                outln!("alert {id} acknowledged");
            }
            Ok(Outcome::Ok)
        }
    }
}

pub fn backup(c: &Client, g: &Global, a: &BackupArgs) -> Result<Outcome> {
    if a.stdin
        || a.image.is_some()
        || a.force_reread
        || !a.include.is_empty()
        || !a.exclude.is_empty()
        || !a.exclude_from.is_empty()
    {
        bail!("through the ingest service, `backup` takes paths only; define a backup job (with filters) in its config, or pass --vault DIR to back up directly");
    }
    let paths: Vec<String> = a.paths.iter().map(|p| p.display().to_string()).collect();
    let path = c.start(ROOT, MANAGER, "Backup", &(paths,))?;
    follow(c, g, &path, false)
}

pub fn snapshots(c: &Client, g: &Global, a: &SnapshotsArgs) -> Result<Outcome> {
    let mut snaps = c.list(SNAPSHOT)?;
    snaps.sort_by_key(|(_, p)| n(p, "Time"));
    if let Some(want) = &a.path {
        let want = want.display().to_string();
        snaps.retain(|(_, p)| {
            p.get("Paths")
                .and_then(Value::as_array)
                .is_some_and(|ps| ps.iter().any(|x| x.as_str() == Some(want.as_str())))
        });
    }
    if g.json {
        print_json(&Value::Array(
            snaps.into_iter().map(|(_, p)| Value::Object(p)).collect(),
        ));
    } else {
        for (_, p) in snaps {
            let paths: Vec<String> = p
                .get("Paths")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            outln!(
                "{}  {}  {:<12} {:>10}  {}  {}",
                &s(&p, "Id")[..16.min(s(&p, "Id").len())],
                usec_time(n(&p, "Time")),
                s(&p, "BackupJob"),
                size(n(&p, "Bytes")),
                s(&p, "Hostname"),
                paths.join(" ")
            );
        }
    }
    Ok(Outcome::Ok)
}

pub fn restore(c: &Client, g: &Global, a: &RestoreArgs) -> Result<Outcome> {
    let Some(target) = &a.target else {
        bail!("through the ingest service, restores go to a --target under its restore roots (--in-place needs --vault DIR)");
    };
    if a.overwrite {
        bail!(
            "through the ingest service, restores never overwrite; restore into an empty --target"
        );
    }
    let target = std::path::absolute(target)?;
    let path = c.start(
        ROOT,
        MANAGER,
        "Restore",
        &(
            a.snapshot.as_str(),
            a.path.as_deref().unwrap_or(""),
            target.display().to_string(),
        ),
    )?;
    follow(c, g, &path, false)
}

pub fn verify(c: &Client, g: &Global, a: &VerifyArgs) -> Result<Outcome> {
    if a.heal_from.is_some() {
        bail!("--heal-from is not available through the ingest service; pass --vault DIR");
    }
    let path = c.start(ROOT, MANAGER, "Verify", &(!a.quick,))?;
    match follow(c, g, &path, false) {
        Ok(o) => Ok(o),
        Err(e)
            if c.props(&path, JOB)
                .is_ok_and(|p| s(&p, "Message").contains("damaged")) =>
        {
            eprintln!("error: {e:#}");
            Ok(Outcome::Damage)
        }
        Err(e) => Err(e),
    }
}
