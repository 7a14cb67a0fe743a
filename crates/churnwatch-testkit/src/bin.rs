//! Where things are at run time: the `churnwatch` binary under test and the
//! repository (its scripts/, proto/, benches/peer/).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The repository's root: this crate is crates/churnwatch-testkit in it.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no repository root above {}", env!("CARGO_MANIFEST_DIR")))
}

/// The `churnwatch` binary to run: `CHURNWATCH_BIN` if set, else the
/// `churnwatch` executable cargo built beside the running one. Integration
/// tests run from `target/<profile>/deps`, the binary is in
/// `target/<profile>/`; a tool such as `loadtest` runs from
/// `target/<profile>/` itself. Panics, saying how to build it, if it is not
/// there.
pub fn churnwatch_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CHURNWATCH_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("the path of the running executable: {e}"));
    let mut dir = exe
        .parent()
        .unwrap_or_else(|| panic!("{} has no directory", exe.display()))
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let bin = dir.join(format!("churnwatch{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        panic!(
            "no churnwatch binary at {}: build it with the same profile and target \
             directory (`cargo build -p churnwatch --bin churnwatch`, with --release \
             for a release run), or name one with CHURNWATCH_BIN",
            bin.display()
        );
    }
    bin
}

/// [`churnwatch_bin`] as a command, without `CHURNWATCH_BIN` in its
/// environment: the binary takes `CHURNWATCH_*` variables as settings and
/// would refuse `bin` as an unknown key.
pub fn churnwatch_command() -> Command {
    let mut c = Command::new(churnwatch_bin());
    c.env_remove("CHURNWATCH_BIN");
    c
}
