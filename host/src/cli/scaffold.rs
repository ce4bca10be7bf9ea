//! `pulp new NAME [--http] [--sqlite]`: a plugin crate that builds to wasm and
//! runs with `pulp run` without edits.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where this binary's guest SDK lives: `plugins/guest` of the checkout it was built from.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/guest")
}

pub struct NewPlugin {
    pub name: String,
    pub http: bool,
    pub sqlite: bool,
    pub dir: PathBuf,
    pub sdk: PathBuf,
}

pub fn new_plugin(req: NewPlugin) -> anyhow::Result<ExitCode> {
    let name = &req.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        bail!("plugin name {name:?} must use only a-z, 0-9, '-' and '_'");
    }
    let root = req.dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let sdk = std::fs::canonicalize(&req.sdk).with_context(|| {
        format!(
            "guest SDK not found at {} (pass --sdk PATH/plugins/guest)",
            req.sdk.display()
        )
    })?;
    std::fs::create_dir_all(root.join("src"))?;
    std::fs::write(root.join("Cargo.toml"), cargo_toml(name, &sdk))?;
    std::fs::write(root.join("src/lib.rs"), lib_rs(name, req.http, req.sqlite))?;
    std::fs::write(
        root.join(format!("{name}.toml")),
        manifest(name, req.http, req.sqlite),
    )?;
    std::fs::write(root.join(".gitignore"), "/target\n/data\n")?;
    println!("created {}", root.display());
    println!(
        "  build: cargo build --manifest-path {}/Cargo.toml --target wasm32-wasip1 --release",
        root.display()
    );
    println!("  run:   pulp run {}/{name}.toml", root.display());
    Ok(ExitCode::SUCCESS)
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
pulp-guest = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}

# A crate of its own, not part of any enclosing workspace.
[workspace]

[profile.release]
opt-level = "s"
lto = true
panic = "abort"
"#,
        sdk = sdk.display().to_string()
    )
}

fn manifest(name: &str, http: bool, sqlite: bool) -> String {
    let mut caps = vec!["\"logging\""];
    if http {
        caps.push("\"transport.http.inbound\"");
    }
    if sqlite {
        caps.push("\"storage.sqlite\"");
    }
    let mut out = format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nwasm = \"target/wasm32-wasip1/release/{}.wasm\"\ncapabilities = [{}]\ntick_ms = 1000\n",
        name.replace('-', "_"),
        caps.join(", ")
    );
    if http {
        out.push_str(&format!(
            "\n[grants.\"transport.http.inbound\"]\nroutes = [\"GET /{name}\"]\n"
        ));
    }
    out.push_str("\n[config]\ngreeting = \"hello\"\n");
    out
}

fn lib_rs(name: &str, http: bool, sqlite: bool) -> String {
    let mut imports = vec!["export_plugin"];
    if http {
        imports.push("http");
    }
    imports.extend(["log", "Plugin"]);
    if sqlite {
        imports.push("sqlite");
    }
    imports.extend(["Step", "StepResult"]);
    let mut init = String::new();
    if sqlite {
        init.push_str(
            "        sqlite::exec(\"CREATE TABLE IF NOT EXISTS visits(at_ns INTEGER NOT NULL)\", &[])?;\n",
        );
    }
    if http {
        init.push_str(&format!("        http::register(\"GET\", \"/{name}\")?;\n"));
    }
    // What a step does: count (visits in SQLite, or in the plugin) and answer or output.
    let count = if sqlite {
        "sqlite::exec(\"INSERT INTO visits(at_ns) VALUES (?)\", &[(step.wall_time_ns as i64).into()])?;\n        let rows = sqlite::query(\"SELECT count(*) FROM visits\", &[])?.rows;\n        let count = rows.first().and_then(|row| row.first()).and_then(|v| v.as_i64()).unwrap_or(0);"
    } else {
        // Counted here, not from the call number: ticks are steps too.
        "self.count += 1;\n        let count = self.count;"
    };
    // A plain ticker reads nothing of its step.
    let step = if http || sqlite { "step" } else { "_step" };
    // Without SQLite the count lives in the plugin (and starts again with it).
    let (field, field_init) = if sqlite {
        ("", "")
    } else {
        ("\n    count: i64,", ", count: 0")
    };
    let body = if http {
        format!("        // Ticks come too (tick_ms); only requests count.\n        let Some(req) = http::request(&step)? else {{ return Ok(None) }};\n        {count}\n        http::respond(&http::text(req.id, 200, format!(\"{{}} #{{count}}\", self.greeting)))?;\n        Ok(None)\n")
    } else {
        format!("        {count}\n        log::info(&format!(\"{{}} #{{count}}\", self.greeting));\n        Ok(Some(format!(\"{{}} #{{count}}\", self.greeting).into_bytes()))\n")
    };
    format!(
        r#"//! {name}: a Pulp plugin. Build with
//! `cargo build --target wasm32-wasip1 --release`, run with `pulp run {name}.toml`.

use pulp_guest::{{{imports}}};
use serde::Deserialize;

/// The manifest's `[config]`.
#[derive(Deserialize, Default)]
struct Config {{
    greeting: String,
}}

struct App {{
    greeting: String,{field}
}}

impl Plugin for App {{
    type Config = Config;

    fn init(config: Config) -> Result<Self, pulp_guest::Error> {{
{init}        log::info("{name} started");
        Ok(App {{ greeting: config.greeting{field_init} }})
    }}

    fn step(&mut self, {step}: Step<'_>) -> StepResult {{
{body}    }}
}}

export_plugin!(App);
"#,
        imports = imports.join(", ")
    )
}
