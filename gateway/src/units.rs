//! Sizes and durations as people write them in manifests and flags: `"128MiB"`, `"30s"`, or
//! plain numbers (bytes, seconds).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// A size in bytes, written as a number or as `"64MiB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim();
        let multiplier: u64 = match unit {
            "" | "B" | "b" => 1,
            "K" | "k" | "KB" | "kB" | "kb" => 1000,
            "KiB" | "Ki" | "kib" => 1 << 10,
            "M" | "MB" | "mb" => 1000 * 1000,
            "MiB" | "Mi" | "mib" => 1 << 20,
            "G" | "GB" | "gb" => 1000 * 1000 * 1000,
            "GiB" | "Gi" | "gib" => 1 << 30,
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit `{unit}` (use B, KiB, MiB, GiB, KB, MB or GB)"
                ));
            }
        };
        let number: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size (e.g. 128MiB)"))?;
        let bytes = number * multiplier as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("`{text}` is out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a size: a number of bytes or a string like \"128MiB\"",
            )
        })? {
            Raw::Int(n) if n >= 0 => Ok(ByteSize(n as u64)),
            Raw::Int(n) => Err(serde::de::Error::custom(format!("size {n} is negative"))),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_bytes(self.0))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&fmt_bytes(self.0))
    }
}

/// Sizes and durations are written as a number or a string with a unit, and shown as strings.
fn number_or_string(description: &str, example: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .item(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .examples([serde_json::Value::from(example)])
        .into()
}

impl utoipa::PartialSchema for ByteSize {
    fn schema() -> RefOr<Schema> {
        number_or_string(
            "A size: a number of bytes, or a string like \"128MiB\"",
            "128MiB",
        )
    }
}

impl utoipa::ToSchema for ByteSize {}

impl utoipa::PartialSchema for HumanDuration {
    fn schema() -> RefOr<Schema> {
        number_or_string(
            "A duration: a number of seconds, or a string like \"30s\"",
            "30s",
        )
    }
}

impl utoipa::ToSchema for HumanDuration {}

/// A duration, written as `"30s"`, `"500ms"`, `"2m"` or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<u64>() {
            return Ok(HumanDuration(Duration::from_secs(secs)));
        }
        humantime::parse_duration(text)
            .map(HumanDuration)
            .map_err(|e| format!("`{text}` is not a duration (e.g. 30s, 500ms, 2m): {e}"))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a duration: a number of seconds or a string like \"30s\"",
            )
        })? {
            Raw::Int(n) if n >= 0 => Ok(HumanDuration(Duration::from_secs(n as u64))),
            Raw::Int(n) => Err(serde::de::Error::custom(format!(
                "duration {n} is negative"
            ))),
            Raw::Text(t) => HumanDuration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

/// A byte count the way [`ByteSize`] writes it: the largest binary unit that divides it.
pub fn fmt_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(ByteSize::parse("1024").unwrap().0, 1024);
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("1.5 GiB").unwrap().0, 3 << 29);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert_eq!(
            HumanDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            HumanDuration::parse("2m").unwrap().0,
            Duration::from_secs(120)
        );
        assert_eq!(HumanDuration::parse("7").unwrap().0, Duration::from_secs(7));
        assert!(HumanDuration::parse("soon").is_err());
    }
}
