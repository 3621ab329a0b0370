//! Several NAS from one server: the fleet file (`TRUENAS_CONFIG` / `--config`), or the environment as a one-NAS
//! fleet named `default`.
//!
//! Each entry of the file holds the per-NAS settings under the names of [`SETTINGS`] (`TRUENAS_PASSWORD_FILE` is
//! `password_file`) and is read by the same parsers, so a bad value gets the same message, prefixed with the file
//! and the entry. Settings of the process (debug, mock mode, audit log) stay in the environment. The file and a
//! per-NAS variable together is refused rather than merged: the operator could not tell which one wins.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde_yaml::Value as Yaml;

use super::{Config, Setting, SETTINGS};

/// Settings of the process, not of one NAS: they come from the environment or flags, never from an entry.
const PROCESS_WIDE: &[&str] =
    &["TRUENAS_CONFIG", "DEBUG_MODE", "MOCK_TRUENAS", "TRUENAS_MOCK_STATE", "TRUENAS_AUDIT_LOG"];

/// The name of the one NAS the environment describes.
pub const DEFAULT_NAME: &str = "default";

/// The longest NAS name (the `nas` argument's `maxLength`).
pub const NAME_MAX: usize = 64;

/// One NAS: its name in the fleet and its settings.
#[derive(Clone, Debug)]
pub struct NasEntry {
    pub name: String,
    pub config: Config,
}

/// Every NAS this server manages, and which one a call without `nas` goes to.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub entries: Vec<NasEntry>,
    /// Index of the default entry.
    pub default: usize,
    /// Whether the NAS came from a fleet file (audit records then name the entry as well as the host).
    pub from_file: bool,
}

impl Fleet {
    /// The environment's one NAS, named `default`.
    pub fn single(config: Config) -> Fleet {
        Fleet { entries: vec![NasEntry { name: DEFAULT_NAME.into(), config }], default: 0, from_file: false }
    }

    /// The fleet the environment and flags describe: the file `TRUENAS_CONFIG` names, or the one NAS of the
    /// variables.
    pub fn from_sources(
        lookup: &dyn Fn(&str) -> Option<String>,
        overrides: &std::collections::BTreeMap<String, String>,
    ) -> Result<Fleet> {
        let base = Config::from_sources(lookup, overrides)?;
        let Some(path) = base.fleet_file.clone() else { return Ok(Fleet::single(base)) };
        let given: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| !PROCESS_WIDE.contains(&s.env))
            .filter(|s| overrides.get(s.env).cloned().or_else(|| lookup(s.env)).is_some_and(|v| !v.trim().is_empty()))
            .map(|s| s.env)
            .collect();
        if !given.is_empty() {
            bail!(
                "TRUENAS_CONFIG and {} are both set: with a fleet file every NAS setting belongs in the file \
                 (move it into an entry, or unset TRUENAS_CONFIG)",
                given.join(", ")
            );
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow!("cannot read TRUENAS_CONFIG '{}': {e}", path.display()))?;
        Fleet::parse(&path, &text, &base, file_is_private(&path))
    }

    /// The entries of the fleet file `text` (read from `path`) over the process-wide settings of `base`.
    /// `private` says whether the file's mode lets only its owner read it (inline secrets need that).
    pub fn parse(path: &Path, text: &str, base: &Config, private: bool) -> Result<Fleet> {
        let at = path.display();
        let doc: Yaml = serde_yaml::from_str(text).map_err(|e| anyhow!("fleet file '{at}': {e}"))?;
        let Some(top) = doc.as_mapping() else {
            bail!("fleet file '{at}' must be a mapping with `nas:` and `default:`")
        };
        for key in top.keys() {
            if !matches!(key.as_str(), Some("nas" | "default")) {
                bail!("fleet file '{at}': unknown key {} (known: nas, default)", show_key(key));
            }
        }
        let Some(nas) = top.get("nas").and_then(Yaml::as_mapping).filter(|m| !m.is_empty()) else {
            bail!("fleet file '{at}' needs `nas:`, a mapping of NAS names to their settings")
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut entries = Vec::new();
        for (name, settings) in nas {
            let Some(name) = name.as_str().filter(|n| name_is_valid(n)) else {
                bail!(
                    "fleet file '{at}': NAS name {} must be 1-{NAME_MAX} letters, digits, '-', '_' or '.'",
                    show_key(name)
                );
            };
            let config =
                entry(base, settings, dir, private).map_err(|e| anyhow!("fleet file '{at}', nas '{name}': {e}"))?;
            entries.push(NasEntry { name: name.to_string(), config });
        }
        let names = || entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ");
        let default = match top.get("default") {
            Some(d) => {
                let d = d.as_str().unwrap_or("");
                entries
                    .iter()
                    .position(|e| e.name == d)
                    .ok_or_else(|| anyhow!("fleet file '{at}': default '{d}' is not one of its NAS ({})", names()))?
            }
            None if entries.len() == 1 => 0,
            None => bail!("fleet file '{at}' names several NAS: add `default: NAME` (one of {})", names()),
        };
        Ok(Fleet { entries, default, from_file: true })
    }

    pub fn default_entry(&self) -> &NasEntry {
        &self.entries[self.default]
    }

    pub fn get(&self, name: &str) -> Option<&NasEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The names, comma-separated, for messages.
    pub fn names(&self) -> String {
        self.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

fn name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn show_key(key: &Yaml) -> String {
    match key.as_str() {
        Some(s) => format!("'{}'", crate::jsonrpc::clip(s)),
        None => "(not a string)".into(),
    }
}

/// The key a setting has in an entry: its variable without `TRUENAS_`, lowercase.
fn key_of(s: &Setting) -> String {
    s.env.trim_start_matches("TRUENAS_").to_ascii_lowercase()
}

/// A YAML scalar or list as the text its variable would hold (lists comma-separated).
fn as_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Sequence(items) => items.iter().map(as_text).collect::<Option<Vec<_>>>().map(|v| v.join(",")),
        _ => None,
    }
}

/// One entry's config: `base` (the process-wide settings) with the entry's values read by the settings' parsers,
/// in table order (a secret before its file, as the parsers expect).
fn entry(base: &Config, settings: &Yaml, dir: &Path, private: bool) -> Result<Config> {
    let Some(map) = settings.as_mapping() else { bail!("its settings must be a mapping such as `host: nas.local`") };
    let per_nas: Vec<&Setting> = SETTINGS.iter().filter(|s| !PROCESS_WIDE.contains(&s.env)).collect();
    let mut values: Vec<(&Setting, String)> = Vec::new();
    for (key, value) in map {
        let k = key.as_str().unwrap_or("");
        // `insecure: true` reads better in a file than `ssl_verify: false`.
        let (setting, value) = if k == "insecure" {
            let on = as_text(value).map(|v| super::parse_bool("insecure", &v)).transpose()?.unwrap_or(false);
            (per_nas.iter().find(|s| s.env == "TRUENAS_SSL_VERIFY"), Some((!on).to_string()))
        } else {
            (per_nas.iter().find(|s| key_of(s) == k), as_text(value))
        };
        let Some(setting) = setting else {
            let process = SETTINGS.iter().find(|s| PROCESS_WIDE.contains(&s.env) && key_of(s) == k);
            if let Some(s) = process {
                bail!("{k} applies to the whole server, not one NAS: set {} instead", s.env);
            }
            let known: Vec<String> = per_nas.iter().map(|s| key_of(s)).collect();
            bail!("unknown setting {} (known: {}, insecure)", show_key(key), known.join(", "));
        };
        let Some(mut value) = value else { bail!("{k} must be a value or a list of values") };
        if setting.secret && !private {
            bail!("an inline {k} needs a file only its owner can read (chmod 600 the fleet file), or use {k}_file");
        }
        // A file named relative to the fleet file is found next to it, wherever the server starts.
        if (setting.env.ends_with("_FILE") || setting.env == "TRUENAS_CA_CERT") && Path::new(value.trim()).is_relative()
        {
            value = dir.join(value.trim()).display().to_string();
        }
        values.push((setting, value));
    }
    let mut config = base.clone();
    for s in &per_nas {
        if let Some((_, v)) = values.iter().find(|(setting, _)| std::ptr::eq(*setting, *s)) {
            if !v.trim().is_empty() {
                (s.parse)(&mut config, v)?;
            }
        }
    }
    if !config.mock && config.host.is_none() && config.url.is_none() {
        bail!("it needs host or url");
    }
    Ok(config)
}

/// Whether only the owner can read or write the file (mode 0600 or stricter).
fn file_is_private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, private: bool) -> Result<Fleet> {
        Fleet::parse(Path::new("/etc/truenas-mcp/fleet.yaml"), text, &Config::default(), private)
    }

    const TWO: &str = "default: main\nnas:\n  main:\n    host: nas.local\n    writable_apps: [test-*, scratch]\n  backup:\n    url: ws://10.0.0.3:81\n    read_only: true\n    compose_policy: strict\n    insecure: true\n";

    #[test]
    fn a_two_nas_file_reads_every_entry_with_the_settings_parsers() {
        let f = parse(TWO, false).unwrap();
        assert_eq!(f.names(), "main, backup");
        assert_eq!(f.default_entry().name, "main");
        let main = &f.get("main").unwrap().config;
        assert_eq!(main.host.as_deref(), Some("nas.local"));
        assert_eq!(main.writable_apps, ["test-*", "scratch"]);
        assert!(!main.read_only && main.ssl_verify);
        let backup = &f.get("backup").unwrap().config;
        assert!(backup.read_only && !backup.ssl_verify);
        assert_eq!(backup.policy.level, super::super::PolicyLevel::Strict);
        assert_eq!(backup.base_url().unwrap(), "ws://10.0.0.3:81");
    }

    #[test]
    fn bad_files_fail_with_the_settings_own_messages() {
        let cases = [
            ("nas:\n  a:\n    host: h\n    port: abc\n", "nas 'a': TRUENAS_PORT must be 1-65535, got 'abc'"),
            ("nas:\n  a:\n    host: h\n  b:\n    host: i\n", "names several NAS: add `default: NAME` (one of a, b)"),
            ("default: c\nnas:\n  a:\n    host: h\n", "default 'c' is not one of its NAS (a)"),
            ("nas:\n  a:\n    hots: h\n", "nas 'a': unknown setting 'hots' (known: "),
            (
                "nas:\n  a:\n    host: h\n    audit_log: off\n",
                "audit_log applies to the whole server, not one NAS: set TRUENAS_AUDIT_LOG",
            ),
            ("nas:\n  a:\n    port: 443\n", "nas 'a': it needs host or url"),
            ("nas:\n  '*':\n    host: h\n", "NAS name '*' must be"),
            (
                "nas:\n  a:\n    host: h\n    password: hunter2\n",
                "an inline password needs a file only its owner can read",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(text, false).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let f = parse("nas:\n  a:\n    host: h\n    password: hunter2\n", true).unwrap();
        assert_eq!(f.default_entry().config.password.as_ref().unwrap().expose(), "hunter2");
    }

    #[test]
    fn the_file_and_per_nas_variables_together_are_refused() {
        let env = |k: &str| match k {
            "TRUENAS_CONFIG" => Some("/nonexistent/fleet.yaml".to_string()),
            "TRUENAS_HOST" => Some("nas.local".to_string()),
            "TRUENAS_AUDIT_LOG" => Some("off".to_string()),
            _ => None,
        };
        let err = Fleet::from_sources(&env, &Default::default()).unwrap_err().to_string();
        assert!(err.starts_with("TRUENAS_CONFIG and TRUENAS_HOST are both set"), "{err}");
        let env_only = |k: &str| (k == "TRUENAS_HOST").then(|| "nas.local".to_string());
        let f = Fleet::from_sources(&env_only, &Default::default()).unwrap();
        assert_eq!((f.entries.len(), f.default_entry().name.as_str()), (1, DEFAULT_NAME));
    }
}
