//! `[grants."spawn.docker"]`: what a plugin may run, and the limits every
//! container it starts gets.

use pulp_ext::{CapabilityError, PluginInfo};
use serde::Deserialize;

use super::NAME;

/// Networks a manifest may choose. `host` and container networks are never
/// offered: they would hand the container the host's own network stack.
const NETWORKS: &[&str] = &["none", "bridge"];

/// Docker refuses a memory limit under 6 MiB.
const MIN_MEMORY_MB: u64 = 6;
/// Largest memory limit accepted (1 TiB): beyond it the byte count would overflow Docker's field.
const MAX_MEMORY_MB: u64 = 1 << 20;
/// Docker's smallest CPU share.
const MIN_CPUS: f64 = 0.01;
/// Longest `timeout_ms` (one day): the deadline label must stay a sane instant.
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// The manifest's narrowing of `spawn.docker`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSettings {
    /// Images the plugin may run (`name` means `name:latest`;
    /// `name@sha256:<hex>` pins the exact local image). Required.
    pub images: Vec<String>,
    /// Containers of this plugin that may exist at once (running, or exited
    /// and not yet removed); one more spawn → code 9.
    pub max_running: u32,
    /// Memory of each container (no swap on top).
    pub memory_mb: u64,
    /// CPUs of each container (may be fractional).
    pub cpus: f64,
    /// Processes in each container.
    pub pids: i64,
    /// `none` (default) or `bridge`.
    pub network: String,
    /// Longest a container may run; a spawn's own `timeout_ms` may only be shorter.
    pub timeout_ms: u64,
    /// Bytes kept of stdout and of stderr each, in KiB; the rest is dropped and marked.
    pub max_output_kb: u32,
    /// Size of the writable `/tmp` (and of each `VOLUME` of the image), MiB:
    /// the root filesystem is read-only. tmpfs pages count against `memory_mb`.
    pub tmpfs_mb: u64,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            images: Vec::new(),
            max_running: 4,
            memory_mb: 256,
            cpus: 1.0,
            pids: 128,
            network: "none".into(),
            timeout_ms: 60_000,
            max_output_kb: 64,
            tmpfs_mb: 16,
        }
    }
}

impl DockerSettings {
    /// Reads and checks the plugin's settings, naming the key at fault.
    pub fn of(plugin: &PluginInfo) -> Result<DockerSettings, CapabilityError> {
        let mut s: DockerSettings = plugin.settings(NAME)?;
        let bad = |message: String| Err(plugin.error(NAME, message));
        if s.images.is_empty() {
            return bad("images must list at least one image the plugin may run".into());
        }
        for image in &mut s.images {
            match normalise_image(image) {
                Some(name) => *image = name,
                None => return bad(format!("images: {image:?} is not an image reference")),
            }
        }
        if s.max_running == 0 || s.timeout_ms == 0 || s.max_output_kb == 0 || s.tmpfs_mb == 0 {
            return bad(
                "max_running, timeout_ms, max_output_kb and tmpfs_mb must be at least 1".into(),
            );
        }
        if s.timeout_ms > MAX_TIMEOUT_MS {
            return bad(format!(
                "timeout_ms = {} is over {MAX_TIMEOUT_MS} (one day)",
                s.timeout_ms
            ));
        }
        if s.memory_mb < MIN_MEMORY_MB {
            return bad(format!(
                "memory_mb = {} is below Docker's minimum of {MIN_MEMORY_MB}",
                s.memory_mb
            ));
        }
        if s.memory_mb > MAX_MEMORY_MB {
            return bad(format!(
                "memory_mb = {} is over {MAX_MEMORY_MB} (1 TiB)",
                s.memory_mb
            ));
        }
        if s.tmpfs_mb > s.memory_mb {
            return bad(format!(
                "tmpfs_mb = {} is over memory_mb = {}: what a container writes to its tmpfs is memory it holds",
                s.tmpfs_mb, s.memory_mb
            ));
        }
        if !(s.cpus.is_finite() && s.cpus >= MIN_CPUS) || s.pids < 1 {
            return bad(format!(
                "cpus must be at least {MIN_CPUS} and pids at least 1"
            ));
        }
        if !NETWORKS.contains(&s.network.as_str()) {
            return bad(format!(
                "network = {:?}: must be one of {}",
                s.network,
                NETWORKS.join(", ")
            ));
        }
        // Both streams plus the event's other fields must fit in one step envelope.
        let max_buffer_kb = plugin.limits.max_buffer / 1024;
        if u64::from(s.max_output_kb) * 2 + 4 > u64::from(max_buffer_kb) {
            return bad(format!(
                "max_output_kb = {} is too large for limits.max_buffer_kb = {max_buffer_kb}: a docker.exit event carries up to twice it (stdout and stderr)",
                s.max_output_kb
            ));
        }
        Ok(s)
    }

    /// The image to run for a request of `image`: the listed one that equals
    /// it in normal form, or, for a request without a digest, the listed pin
    /// of that name (`app` runs `app@sha256:…` when that is what is listed).
    /// `None` when the manifest does not allow it.
    pub fn image_for(&self, image: &str) -> Option<String> {
        let wanted = normalise_image(image)?;
        if self.images.contains(&wanted) {
            return Some(wanted);
        }
        if wanted.contains('@') {
            return None;
        }
        self.images
            .iter()
            .find(|listed| {
                listed
                    .split_once('@')
                    .and_then(|(name, _)| normalise_image(name))
                    .is_some_and(|name| name == wanted)
            })
            .cloned()
    }

    /// Memory limit in bytes, for Docker.
    pub fn memory_bytes(&self) -> i64 {
        i64::try_from(self.memory_mb << 20).unwrap_or(i64::MAX)
    }

    /// CPU limit in billionths of a CPU, for Docker.
    pub fn nano_cpus(&self) -> i64 {
        (self.cpus * 1e9) as i64
    }

    /// Output bytes kept per stream.
    pub fn max_output(&self) -> usize {
        self.max_output_kb as usize * 1024
    }
}

/// `name` → `name:latest`; a reference with a tag or digest is kept as is.
/// `None` when it cannot be an image reference (empty, spaces, control
/// characters, a digest that is not `sha256:` and 64 hex digits).
pub fn normalise_image(image: &str) -> Option<String> {
    let image = image.trim();
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    if let Some((name, digest)) = image.split_once('@') {
        return (!name.is_empty() && is_digest(digest)).then(|| image.to_string());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        Some(image.to_string())
    } else {
        Some(format!("{image}:latest"))
    }
}

/// The digest of an image pin: `sha256:` and 64 lowercase hex digits.
pub fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulp_ext::GuestLimits;
    use std::time::Duration;

    fn plugin(grants: &str) -> PluginInfo {
        let table: toml::Table = toml::from_str(grants).unwrap();
        PluginInfo {
            name: "p".into(),
            capabilities: vec![NAME.into()],
            data_dir: "data/p".into(),
            grants: [(NAME.to_string(), table)].into(),
            limits: GuestLimits {
                max_buffer: 1 << 20,
                call_budget: Duration::from_secs(1),
            },
            usage: Default::default(),
        }
    }

    fn refusal(grants: &str) -> String {
        DockerSettings::of(&plugin(grants)).unwrap_err().to_string()
    }

    #[test]
    fn images_compare_in_normal_form() {
        let s =
            DockerSettings::of(&plugin(r#"images = ["busybox", "registry:5000/app:v2"]"#)).unwrap();
        assert_eq!(s.images, ["busybox:latest", "registry:5000/app:v2"]);
        let allows = |image: &str| s.image_for(image).is_some();
        assert!(allows("busybox") && allows("busybox:latest"));
        assert!(allows("registry:5000/app:v2"));
        assert!(!allows("busybox:1.36") && !allows("registry:5000/app"));
        assert!(!allows("") && !allows("busy box"));
        let pinned = format!("alpine@sha256:{}", "ab".repeat(32));
        assert_eq!(normalise_image(&pinned), Some(pinned.clone()));
        for bad in [
            "alpine@sha256:ab",
            "alpine@md5:00",
            "@sha256:0",
            &format!("alpine@sha256:{}", "AB".repeat(32)),
        ] {
            assert_eq!(normalise_image(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_pinned_image_is_what_its_name_runs() {
        let digest = format!("sha256:{}", "0f".repeat(32));
        let s = DockerSettings::of(&plugin(&format!(r#"images = ["app@{digest}"]"#))).unwrap();
        let pinned = format!("app@{digest}");
        for request in ["app", "app:latest", pinned.as_str()] {
            assert_eq!(s.image_for(request), Some(pinned.clone()), "{request}");
        }
        let other = format!("app@sha256:{}", "1e".repeat(32));
        assert_eq!(s.image_for(&other), None);
        assert_eq!(s.image_for("app:v2"), None);
    }

    #[test]
    fn defaults_are_narrow() {
        let s = DockerSettings::of(&plugin(r#"images = ["busybox"]"#)).unwrap();
        assert_eq!(s.network, "none");
        assert_eq!(
            (s.memory_bytes(), s.nano_cpus()),
            (256 << 20, 1_000_000_000)
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        assert!(refusal("").contains("images must list"));
        assert!(refusal(r#"images = ["a b"]"#).contains("is not an image reference"));
        // One bad key next to a valid image list; the message names it.
        for (key, message) in [
            (
                r#"network = "host""#,
                r#"network = "host": must be one of none, bridge"#,
            ),
            ("memory_mb = 2", "memory_mb = 2 is below"),
            ("memory_mb = 17592186044416", "is over 1048576"),
            ("max_output_kb = 600", "max_output_kb = 600 is too large"),
            ("cpus = 0.0", "cpus must be at least 0.01"),
            ("tmpfs_mb = 0", "tmpfs_mb must be at least 1"),
            ("tmpfs_mb = 512", "tmpfs_mb = 512 is over memory_mb = 256"),
            (
                "timeout_ms = 999999999999",
                "timeout_ms = 999999999999 is over",
            ),
            ("max_runing = 2", "unknown field `max_runing`"),
        ] {
            let refused = refusal(&format!("images = [\"a\"]\n{key}"));
            assert!(refused.contains(message), "{key}: {refused}");
        }
    }
}
