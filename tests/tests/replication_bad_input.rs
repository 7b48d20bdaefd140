//! Bad input to the replication, retention and collection commands: one clear line naming
//! the problem, a non-zero exit, and the vault unchanged.

mod common;

use common::cli::error_line;
use common::{tree, Vault};

fn fails(vault: &Vault, code: i32, args: &[&str], needle: &str) {
    let out = vault.expect(code, args);
    let line = if code == 2 {
        String::from_utf8_lossy(&out.stderr).to_string()
    } else {
        error_line(&out, &args.join(" "))
    };
    assert!(
        line.contains(needle),
        "`vaultctl {}`: the error does not mention {needle:?}: {line}",
        args.join(" ")
    );
}

#[test]
fn replication_and_retention_commands_name_what_is_wrong() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 10, 100..2000, 0.5, 1);
    vault.backup(&[&src]);
    let before = vault.snapshots();
    let dir = vault.dir.to_string_lossy().to_string();
    let missing = vault
        .scratch("no-such-file.pem")
        .to_string_lossy()
        .to_string();

    fails(
        &vault,
        1,
        &["replicate", "--to", "tiervault://127.0.0.1:9"],
        "--ca",
    );
    fails(
        &vault,
        1,
        &[
            "replicate",
            "--to",
            "tiervault://127.0.0.1:9",
            "--ca",
            &missing,
            "--cert",
            &missing,
            "--key",
            &missing,
        ],
        "no-such-file.pem",
    );
    fails(
        &vault,
        1,
        &[
            "replicate",
            "--to",
            "tiervault://127.0.0.1:notaport",
            "--ca",
            &missing,
            "--cert",
            &missing,
            "--key",
            &missing,
        ],
        "notaport",
    );
    fails(&vault, 1, &["replicate", "--to", &dir], "onto itself");
    fails(
        &vault,
        1,
        &[
            "replicate",
            "--to",
            "tiervault://127.0.0.1:9",
            "--limit",
            "5KB/s",
        ],
        "5KB/s",
    );
    fails(
        &vault,
        1,
        &["replicate", "--to", "x", "--snapshot", "ffffffff"],
        "ffffffff",
    );
    fails(&vault, 1, &["gc", "--max-unused", "2"], "--max-unused");
    fails(&vault, 1, &["forget", "latest"], "latest");
    fails(&vault, 1, &["forget", "--keep-within", "3 days"], "3 days");
    fails(&vault, 2, &["forget"], "--keep");
    fails(
        &vault,
        1,
        &[
            "pull",
            "--from",
            "https://example",
            "--ca",
            &missing,
            "--cert",
            &missing,
            "--key",
            &missing,
        ],
        "tiervault://",
    );
    fails(
        &vault,
        1,
        &["import", "--from", &missing],
        "no-such-file.pem",
    );

    assert_eq!(
        vault.snapshots(),
        before,
        "a failed command changed the vault"
    );
}
