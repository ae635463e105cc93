//! The function manifest (`wafer.toml`, or JSON through the admin API): parsing, defaults, and
//! validation into the types the worker runs with.
//!
//! ```toml
//! name = "hello"                         # lowercase letters, digits, '-'; at most 63
//! component = "target/wasm32-wasip2/release/hello.wasm"   # relative to this file
//! build = "cargo build --release --target wasm32-wasip2"  # optional, run in this folder
//! route = "/hello"                       # default "/<name>"; the function gets this path and below
//! allowed_outbound_hosts = ["https://api.example.com"]    # default: none
//!
//! [env]                                  # the guest's whole environment
//! GREETING = "hello"
//!
//! [secrets]                              # more environment, never shown by the API
//! API_KEY = "s3cr3t"
//!
//! [limits]
//! memory = "128MiB"                      # per instance
//! timeout = "30s"                        # per call, wall clock
//! concurrency = 16                       # calls at once
//! max_queued = 64                        # calls waiting beyond that; more get 429
//! log_bytes_per_call = "1MiB"
//!
//! [scaling]
//! reuse = 1000                           # calls per instance; 1 = a fresh instance per call
//! idle_timeout = "60s"                   # warm instances idle longer are dropped
//! min_instances = 0                      # kept live and ready even when idle (pre-warmed)
//! max_instances = 16                     # live instances at most [default: as concurrency needs]
//! instance_concurrency = 16              # calls one wasi:http 0.3 instance takes at once
//!
//! [[queue]]                              # any number; see `trigger::amqp::config`
//! queue = "orders"
//! max_attempts = 5
//!
//! [[schedule]]                           # any number; see `trigger::schedule::config`
//! cron = "0 9 * * MON-FRI"               # 5 fields, or 6 with seconds first
//! timezone = "Europe/Berlin"             # IANA name [default: UTC]
//! missed = "run-once"                    # or "skip" [default]: slots passed while wafer was down
//! ```
//!
//! Unknown keys are errors that name the key; sizes take `B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`
//! (or a plain number of bytes); durations take `ms`, `s`, `m`, `h` (or a plain number of seconds).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wafer_worker::{AllowedHosts, FunctionConfig, Limits};

pub use crate::error::ManifestError;
use crate::router::RESERVED_PREFIX;
use crate::trigger::amqp::config::{QueueSection, QueueTrigger};
use crate::trigger::schedule::config::{ScheduleSection, ScheduleTrigger};
use crate::units::{ByteSize, HumanDuration, fmt_bytes};

/// A manifest as written. `component` and `build` concern the machine that has the files (the
/// CLI); the server ignores them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Like `env`, but the values are never shown again: the API answers `***` for them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub scaling: ScalingSection,
    /// Queue triggers: RabbitMQ queues whose messages call this function.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<QueueSection>,
    /// Schedules: cron patterns at whose slots the function is called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleSection>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes_per_call: Option<ByteSize>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalingSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_concurrency: Option<u32>,
}

impl LimitsSection {
    /// Checks each field into `limits`, which holds the defaults.
    fn apply(&self, limits: &mut Limits) -> Result<(), ManifestError> {
        limits.memory = in_range(
            "limits.memory",
            self.memory.map(|s| s.0),
            limits.memory,
            1 << 20,
            4 << 30,
            fmt_bytes,
        )?;
        limits.timeout = in_range(
            "limits.timeout",
            self.timeout.map(|t| t.0),
            limits.timeout,
            Duration::from_millis(1),
            Duration::from_secs(15 * 60),
            |t| humantime::format_duration(t).to_string(),
        )?;
        limits.concurrency = in_range(
            "limits.concurrency",
            self.concurrency,
            limits.concurrency,
            1,
            1000,
            |n| n.to_string(),
        )?;
        limits.max_queued = in_range(
            "limits.max_queued",
            self.max_queued,
            limits.max_queued,
            0,
            100_000,
            |n| n.to_string(),
        )?;
        limits.log_bytes_per_call = in_range(
            "limits.log_bytes_per_call",
            self.log_bytes_per_call.map(|s| s.0),
            limits.log_bytes_per_call,
            0,
            64 << 20,
            fmt_bytes,
        )?;
        Ok(())
    }
}

impl ScalingSection {
    /// Checks each field into `limits`, which holds the defaults.
    fn apply(&self, limits: &mut Limits) -> Result<(), ManifestError> {
        limits.reuse = in_range(
            "scaling.reuse",
            self.reuse,
            limits.reuse,
            1,
            10_000_000,
            |n| n.to_string(),
        )?;
        limits.idle_timeout = in_range(
            "scaling.idle_timeout",
            self.idle_timeout.map(|t| t.0),
            limits.idle_timeout,
            Duration::ZERO,
            Duration::from_secs(24 * 3600),
            |t| humantime::format_duration(t).to_string(),
        )?;
        limits.min_instances = in_range(
            "scaling.min_instances",
            self.min_instances,
            limits.min_instances,
            0,
            1000,
            |n| n.to_string(),
        )?;
        limits.max_instances = self
            .max_instances
            .map(|n| {
                in_range("scaling.max_instances", Some(n), n, 1, 1000, |n| {
                    n.to_string()
                })
            })
            .transpose()?;
        limits.instance_concurrency = in_range(
            "scaling.instance_concurrency",
            self.instance_concurrency,
            limits.instance_concurrency,
            1,
            1000,
            |n| n.to_string(),
        )?;
        Ok(())
    }
}

/// A manifest that passed validation, in the worker's terms.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    pub name: String,
    pub route: String,
    pub config: FunctionConfig,
    pub queues: Vec<QueueTrigger>,
    pub schedules: Vec<ScheduleTrigger>,
}

fn err<T>(msg: impl Into<String>) -> Result<T, ManifestError> {
    Err(ManifestError(msg.into()))
}

impl Manifest {
    /// Parses TOML (as in `wafer.toml`). Errors name the offending key's path.
    pub fn from_toml(text: &str) -> Result<Manifest, ManifestError> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| ManifestError(format!("invalid manifest: {}", e.message())))?;
        serde_path_to_error::deserialize(deserializer)
            .map_err(|e| path_error(e.path(), e.inner().message()))
    }

    /// Parses JSON (as the admin API takes it). Errors name the offending key's path.
    pub fn from_json(text: &[u8]) -> Result<Manifest, ManifestError> {
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| path_error(e.path(), &e.inner().to_string()))
    }

    /// Checks every field and fills in defaults. `name` is the function's name as addressed (the
    /// manifest may omit it but must not contradict it).
    pub fn validate(&self, name: &str) -> Result<FunctionSpec, ManifestError> {
        validate_name(name)?;
        if let Some(own) = &self.name
            && own != name
        {
            return err(format!(
                "name: the manifest says `{own}` but the function is deployed as `{name}`"
            ));
        }
        let route = match &self.route {
            Some(route) => validate_route(route)?,
            None => format!("/{name}"),
        };
        let env = self.environment()?;
        let allowed_outbound_hosts = AllowedHosts::parse(&self.allowed_outbound_hosts)
            .map_err(|e| ManifestError(format!("allowed_outbound_hosts: {e}")))?;
        let limits = self.validated_limits()?;
        let queues = self.validated_queues(&limits)?;
        let schedules = self.validated_schedules()?;
        Ok(FunctionSpec {
            name: name.to_string(),
            route: route.clone(),
            queues,
            schedules,
            config: FunctionConfig {
                env,
                allowed_outbound_hosts,
                limits,
                route,
            },
        })
    }

    /// `env` and `secrets` checked, as the guest's environment.
    fn environment(&self) -> Result<Vec<(String, String)>, ManifestError> {
        validate_env("env", &self.env)?;
        validate_env("secrets", &self.secrets)?;
        if let Some(both) = self.env.keys().find(|k| self.secrets.contains_key(*k)) {
            return err(format!(
                "secrets.{both}: also set in env; set it in one place"
            ));
        }
        if self.env.len() + self.secrets.len() > MAX_ENV_VARS {
            return err(format!(
                "env and secrets: more than the {MAX_ENV_VARS} variables allowed"
            ));
        }
        Ok(self
            .env
            .iter()
            .chain(&self.secrets)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// `[limits]` and `[scaling]` checked, with the defaults filled in.
    fn validated_limits(&self) -> Result<Limits, ManifestError> {
        let mut limits = Limits::default();
        self.limits.apply(&mut limits)?;
        self.scaling.apply(&mut limits)?;
        if let Some(max) = limits.max_instances
            && limits.min_instances > max
        {
            return err(format!(
                "scaling.min_instances: {} is above scaling.max_instances ({max})",
                limits.min_instances
            ));
        }
        if limits.min_instances > limits.concurrency {
            return err(format!(
                "scaling.min_instances: {} is above limits.concurrency ({}), the most instances the function may have",
                limits.min_instances, limits.concurrency
            ));
        }
        Ok(limits)
    }

    /// Each `[[queue]]` checked; a queue may be one trigger of a function once.
    fn validated_queues(&self, limits: &Limits) -> Result<Vec<QueueTrigger>, ManifestError> {
        let mut queues = Vec::with_capacity(self.queue.len());
        for (i, section) in self.queue.iter().enumerate() {
            let trigger = QueueTrigger::validate(section, limits)
                .map_err(|e| ManifestError(format!("queue[{i}].{e}")))?;
            if queues
                .iter()
                .any(|q: &QueueTrigger| q.queue == trigger.queue && q.url == trigger.url)
            {
                return err(format!(
                    "queue[{i}].queue: `{}` is already a trigger of this function",
                    trigger.queue
                ));
            }
            queues.push(trigger);
        }
        Ok(queues)
    }

    /// Each `[[schedule]]` checked; names are unique within the function.
    fn validated_schedules(&self) -> Result<Vec<ScheduleTrigger>, ManifestError> {
        let mut schedules: Vec<ScheduleTrigger> = Vec::with_capacity(self.schedule.len());
        for (i, section) in self.schedule.iter().enumerate() {
            let trigger = ScheduleTrigger::validate(section, i)
                .map_err(|e| ManifestError(format!("schedule[{i}].{e}")))?;
            if schedules.iter().any(|s| s.name == trigger.name) {
                return err(format!(
                    "schedule[{i}].name: `{}` names another schedule of this function",
                    trigger.name
                ));
            }
            schedules.push(trigger);
        }
        Ok(schedules)
    }

    /// The manifest as the server keeps it: without the CLI-side fields.
    pub fn server_side(&self) -> Manifest {
        Manifest {
            component: None,
            build: None,
            ..self.clone()
        }
    }
}

fn path_error(path: &serde_path_to_error::Path, message: &str) -> ManifestError {
    let path = path.to_string();
    if path == "." || path.is_empty() {
        ManifestError(format!("invalid manifest: {message}"))
    } else {
        ManifestError(format!("invalid manifest: {path}: {message}"))
    }
}

fn in_range<T: PartialOrd + Copy>(
    field: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
    show: impl Fn(T) -> String,
) -> Result<T, ManifestError> {
    let value = value.unwrap_or(default);
    if value < min || value > max {
        return err(format!(
            "{field}: {} is out of range ({} to {})",
            show(value),
            show(min),
            show(max)
        ));
    }
    Ok(value)
}

/// Function names: 1 to 63 of `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
/// This rules out path traversal, slashes, upper/lower-case twins and unicode look-alikes.
pub fn validate_name(name: &str) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return err(format!(
            "name: `{}` is not a valid function name (1-63 characters of a-z, 0-9 and '-', not starting or ending with '-')",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Routes: `/` or `/`-separated segments of `A-Z a-z 0-9 . _ ~ -` (no `.` or `..` segments, no
/// empty ones, no percent-encoding), not under [`RESERVED_PREFIX`]. A trailing `/` is dropped.
pub fn validate_route(route: &str) -> Result<String, ManifestError> {
    let bad = |why: &str| err(format!("route: `{}` {why}", route.escape_debug()));
    if route == "/" {
        return Ok(route.to_string());
    }
    let Some(body) = route.strip_prefix('/') else {
        return bad("must start with '/'");
    };
    let body = body.strip_suffix('/').unwrap_or(body);
    for segment in body.split('/') {
        if segment.is_empty() {
            return bad("has an empty segment");
        }
        if segment == "." || segment == ".." {
            return bad("has a '.' or '..' segment");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        {
            return bad("may only contain A-Z, a-z, 0-9, '.', '_', '~', '-' and '/'");
        }
    }
    let route = format!("/{body}");
    let lower = route.to_ascii_lowercase();
    if lower == RESERVED_PREFIX || lower.starts_with(&format!("{RESERVED_PREFIX}/")) {
        return bad(&format!("is under {RESERVED_PREFIX}, which wafer reserves"));
    }
    Ok(route)
}

const MAX_ENV_VARS: usize = 256;
const MAX_ENV_BYTES: usize = 64 << 10;

fn validate_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), ManifestError> {
    if env.len() > MAX_ENV_VARS {
        return err(format!(
            "{field}: {} variables is more than the {MAX_ENV_VARS} allowed",
            env.len()
        ));
    }
    let mut total = 0;
    for (key, value) in env {
        let valid_key = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_key {
            return err(format!(
                "{field}: `{}` is not a valid variable name (letters, digits and '_', not starting with a digit)",
                key.escape_debug()
            ));
        }
        if value.contains('\0') {
            return err(format!("{field}.{key}: values may not contain NUL"));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ENV_BYTES {
        return err(format!(
            "{field}: {total} bytes in all is more than the {MAX_ENV_BYTES} allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_manifest_round_trips() {
        let m = Manifest::from_toml(
            r#"
            name = "hello"
            component = "hello.wasm"
            build = "make"
            route = "/api/hello/"
            allowed_outbound_hosts = ["https://example.com"]
            [env]
            GREETING = "hi"
            [limits]
            memory = "64MiB"
            timeout = "5s"
            concurrency = 4
            max_queued = 0
            [scaling]
            reuse = 1
            idle_timeout = 10
            "#,
        )
        .unwrap();
        let spec = m.validate("hello").unwrap();
        assert_eq!(spec.route, "/api/hello");
        assert_eq!(spec.config.limits.memory, 64 << 20);
        assert_eq!(spec.config.limits.timeout, Duration::from_secs(5));
        assert_eq!(spec.config.limits.reuse, 1);
        assert_eq!(spec.config.limits.idle_timeout, Duration::from_secs(10));
        assert_eq!(spec.config.env, vec![("GREETING".into(), "hi".into())]);
        let json = serde_json::to_vec(&m.server_side()).unwrap();
        let back = Manifest::from_json(&json).unwrap();
        assert_eq!(back.component, None);
        assert_eq!(back.validate("hello").unwrap().config, spec.config);
    }

    #[test]
    fn defaults() {
        let spec = Manifest::default().validate("f").unwrap();
        assert_eq!(spec.route, "/f");
        assert_eq!(spec.config.limits, Limits::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Manifest::from_toml("name = \"x\"\nmemroy = 1").unwrap_err();
        assert!(e.0.contains("memroy"), "{e}");
        let e = Manifest::from_toml("[limits]\nmem = \"1MiB\"").unwrap_err();
        assert!(e.0.contains("mem"), "{e}");
    }

    #[test]
    fn wrong_types_and_ranges_are_named() {
        let e = Manifest::from_toml("[limits]\nconcurrency = \"lots\"").unwrap_err();
        assert!(e.0.contains("limits.concurrency: invalid type"), "{e}");
        let e = Manifest::from_json(br#"{"scaling": {"reuse": "often"}}"#).unwrap_err();
        assert!(e.0.contains("scaling.reuse: invalid type"), "{e}");
        let e = Manifest::from_toml("[limits]\nmemory = -5").unwrap_err();
        assert!(e.0.contains("negative"), "{e}");
        let m = Manifest::from_toml("[limits]\nmemory = \"64TiB\"");
        assert!(m.is_err());
        let m = Manifest::from_toml("[limits]\nmemory = \"100GiB\"").unwrap();
        let e = m.validate("f").unwrap_err();
        assert!(e.0.starts_with("limits.memory"), "{e}");
        let m = Manifest::from_toml("[limits]\nconcurrency = 0").unwrap();
        assert!(
            m.validate("f")
                .unwrap_err()
                .0
                .contains("limits.concurrency")
        );
        let m = Manifest::from_toml("[limits]\ntimeout = \"1year\"").unwrap();
        assert!(m.validate("f").unwrap_err().0.contains("limits.timeout"));
    }

    #[test]
    fn names() {
        for good in ["a", "hello", "my-fn-2", &"x".repeat(63)] {
            validate_name(good).unwrap();
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Hello",
            "../etc",
            "a/b",
            "a.b",
            "héllo",
            "hеllo", // Cyrillic e
            &"x".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(validate_route("/").unwrap(), "/");
        assert_eq!(validate_route("/a/b.c/").unwrap(), "/a/b.c");
        for bad in [
            "a",
            "/a//b",
            "/a/../b",
            "/./x",
            "/a%2e",
            "/_wafer",
            "/_WAFER/x",
            "/a b",
            "/é",
        ] {
            assert!(validate_route(bad).is_err(), "{bad}");
        }
        assert!(validate_route("/_waferx").is_ok());
    }

    #[test]
    fn env_names() {
        let m = Manifest::from_toml("[env]\n\"1BAD\" = \"x\"").unwrap();
        assert!(m.validate("f").unwrap_err().0.contains("1BAD"));
        let m = Manifest::from_toml("[env]\n\"A=B\" = \"x\"").unwrap();
        assert!(m.validate("f").is_err());
    }

    #[test]
    fn instance_counts() {
        let spec = |toml: &str| Manifest::from_toml(toml).unwrap().validate("f");
        let limits = spec("[scaling]\nmax_instances = 4\ninstance_concurrency = 8")
            .unwrap()
            .config
            .limits;
        assert_eq!(limits.max_instances, Some(4));
        assert_eq!(limits.instance_concurrency, 8);
        assert_eq!(spec("").unwrap().config.limits.max_instances, None);
        let e = spec("[scaling]\nmin_instances = 3\nmax_instances = 2").unwrap_err();
        assert!(e.0.contains("scaling.min_instances"), "{e}");
        let e = spec("[scaling]\ninstance_concurrency = 0").unwrap_err();
        assert!(e.0.contains("scaling.instance_concurrency"), "{e}");
        let e = spec("[scaling]\nmax_instances = 0").unwrap_err();
        assert!(e.0.contains("scaling.max_instances"), "{e}");
    }
}
