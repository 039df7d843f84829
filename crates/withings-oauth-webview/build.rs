//! Names the platform families once, so the sources test a name instead of repeating target lists.
//!
//! - `gtk_platform`: tao and wry run on GTK 3 and WebKitGTK (Linux and the BSDs). The `gtk`
//!   dependency in Cargo.toml carries the same list, because Cargo can't read these names.
//! - `window_thread`: the login window can run on a thread of its own (the GTK platforms and
//!   Windows). Everywhere else the agent answers with an error that says what to use instead.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(gtk_platform)");
    println!("cargo::rustc-check-cfg=cfg(window_thread)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let gtk = matches!(
        os.as_str(),
        "linux" | "dragonfly" | "freebsd" | "netbsd" | "openbsd"
    );
    if gtk {
        println!("cargo::rustc-cfg=gtk_platform");
    }
    if gtk || os == "windows" {
        println!("cargo::rustc-cfg=window_thread");
    }
}
