//! `backup --image` of a real block device (a loop device over a file): stored as one regular
//! file of the device's size, restored bit-identical. Needs root and a free loop device.

mod common;

use std::process::Command;

use common::{gen, Vault};

/// Detaches the loop device even when an assertion fails.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn image_of_a_loop_device_restores_identically() {
    if !rustix::process::geteuid().is_root() {
        common::skip("block device image: needs root to attach a loop device");
        return;
    }
    let vault = Vault::new();
    let backing = vault.scratch("disk.img");
    let mut data = vec![0u8; 8 << 20];
    gen::Rng::new(99).fill(&mut data);
    data[1 << 20..3 << 20].fill(0);
    std::fs::write(&backing, &data).expect("writing the backing file");
    let out = match Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing)
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            common::skip(&format!(
                "block device image: losetup failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            return;
        }
        Err(e) => {
            common::skip(&format!("block device image: losetup not runnable: {e}"));
            return;
        }
    };
    let dev = Loop(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let name = dev.0.rsplit('/').next().expect("device name").to_string();

    vault.json(0, ["backup", "--image", &dev.0]);
    let target = vault.scratch("restore");
    vault.restore("latest", &target);
    let restored = std::fs::read(target.join(&name)).expect("reading the restored image");
    assert_eq!(
        restored.len(),
        data.len(),
        "restored image has the device's size"
    );
    assert!(
        restored == data,
        "restored image differs from the device's content"
    );
    let listing = vault.json(0, ["ls", "latest"]);
    assert_eq!(
        listing[0]["type"], "file",
        "a device image is stored as a regular file"
    );
}
