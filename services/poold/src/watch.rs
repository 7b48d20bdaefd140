//! Waiting for something to change, without slow polling: the kernel notifies md sysfs
//! attributes (`array_state`, `degraded`, `sync_action`, `sync_completed`, each member's
//! `state`) through poll(2) with POLLPRI, udev announces disks arriving and leaving on its
//! netlink monitor, and the service's own bus methods wake the loop through a socket pair.
//! A timeout is the safety net (and paces progress updates while an array syncs).

use std::fs::File;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};

/// Why the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// An md attribute changed (its path).
    Sysfs(PathBuf),
    /// udev events: (action, device name) pairs.
    Udev(Vec<(String, String)>),
    /// A bus method asked for a fresh look.
    Poked,
    Timeout,
}

/// Wakes the service's loop from another thread (a bus method that changed something).
#[derive(Clone)]
pub struct Poker(std::sync::Arc<UnixStream>);

impl Poker {
    pub fn poke(&self) {
        use std::io::Write;
        // A full socket buffer means a wake-up is pending already.
        let _ = (&*self.0).write(&[1]);
    }
}

pub struct Watcher {
    udev: Option<udev::MonitorSocket>,
    wake_rx: UnixStream,
    poker: Poker,
    sysfs_root: PathBuf,
}

/// The attributes of an md array whose changes the kernel announces.
const MD_ATTRS: [&str; 4] = ["array_state", "degraded", "sync_action", "sync_completed"];

impl Watcher {
    /// A watcher on sysfs under `sysfs_root`; without udev (no netlink permission, no
    /// udevd) disks arriving are seen at the next rescan, which is logged.
    pub fn new(sysfs_root: &Path) -> std::io::Result<Watcher> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        let udev = match udev::MonitorBuilder::new()
            .and_then(|b| b.match_subsystem("block"))
            .and_then(|b| b.listen())
        {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(
                    "udev monitor unavailable ({e}): new disks are seen at the next rescan"
                );
                None
            }
        };
        Ok(Watcher {
            udev,
            wake_rx: rx,
            poker: Poker(std::sync::Arc::new(tx)),
            sysfs_root: sysfs_root.to_owned(),
        })
    }

    pub fn poker(&self) -> Poker {
        self.poker.clone()
    }

    pub fn has_udev(&self) -> bool {
        self.udev.is_some()
    }

    /// The md attribute files to watch for the arrays `md_devs` (`md127`, ...), members'
    /// states included.
    fn attr_paths(&self, md_devs: &[String]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dev in md_devs {
            let md = self.sysfs_root.join("block").join(dev).join("md");
            out.extend(MD_ATTRS.iter().map(|a| md.join(a)));
            if let Ok(entries) = std::fs::read_dir(&md) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with("dev-") {
                        out.push(e.path().join("state"));
                    }
                }
            }
        }
        out
    }

    /// Blocks until an event or `timeout`.
    pub fn wait(&mut self, md_devs: &[String], timeout: Duration) -> std::io::Result<Wake> {
        // sysfs notification: read the attribute once, then poll for POLLPRI|POLLERR.
        let paths = self.attr_paths(md_devs);
        let mut files = Vec::new();
        for p in paths {
            if let Ok(mut f) = File::open(&p) {
                let mut sink = Vec::new();
                let _ = f.read_to_end(&mut sink);
                files.push((p, f));
            }
        }
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(files.len() + 2);
        fds.push(PollFd::new(&self.wake_rx, PollFlags::IN));
        if let Some(u) = &self.udev {
            fds.push(PollFd::new(u, PollFlags::IN));
        }
        let first_file = fds.len();
        for (_, f) in &files {
            fds.push(PollFd::new(f, PollFlags::PRI | PollFlags::ERR));
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let n = match poll(&mut fds, ms) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => return Ok(Wake::Timeout),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(Wake::Timeout);
        }
        let woke: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if woke[0] {
            let mut buf = [0u8; 64];
            while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
            return Ok(Wake::Poked);
        }
        if self.udev.is_some() && woke[1] {
            let mut events = Vec::new();
            if let Some(u) = &self.udev {
                for ev in u.iter() {
                    events.push((
                        ev.event_type().to_string(),
                        ev.sysname().to_string_lossy().into_owned(),
                    ));
                }
            }
            return Ok(Wake::Udev(events));
        }
        let hit = woke[first_file..]
            .iter()
            .position(|w| *w)
            .and_then(|i| files.get(i))
            .map(|(p, _)| p.clone());
        Ok(hit.map_or(Wake::Timeout, Wake::Sysfs))
    }
}
