//! A small disk for the SQLite disk-full scenario: a tmpfs of a fixed size mounted in
//! the run folder (which needs root), and a filler file that takes all but a little of
//! its free space while the fault lasts.

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted when dropped.
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `megabytes` at `path` (created if missing).
    pub fn mount(path: &Path, megabytes: u32) -> Result<SmallDisk, Error> {
        // A run that was killed left its disk mounted: out of the way first.
        let _ = Command::new("umount").arg("-l").arg(path).output();
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(path)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs at {} (the disk-full scenario needs root): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(SmallDisk {
            path: path.to_path_buf(),
        })
    }

    /// Fills the disk up to `leave` free bytes with a file; returns its path.
    pub fn fill(&self, leave: u64) -> Result<PathBuf, Error> {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.path)
            .output()?;
        let free: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .ok_or("df gave no free space")?;
        let filler = self.path.join("filler");
        let size = free.saturating_sub(leave);
        let file = std::fs::File::create(&filler)?;
        // Written, not just sized: a sparse file would take no space.
        let mut writer = std::io::BufWriter::new(file);
        let block = vec![0_u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            std::io::Write::write_all(&mut writer, &block[..n])?;
            left -= n as u64;
        }
        std::io::Write::flush(&mut writer)?;
        Ok(filler)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
