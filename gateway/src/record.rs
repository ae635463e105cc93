//! A function's record: its immutable versions, how its calls split between them, its tags, and
//! the rules every change follows (a deploy, a new split, a rollback, a tag), as pure functions
//! of the record so that both stores (a directory, PostgreSQL) keep the same history.
//!
//! The version that carries the most traffic (the newest of equals) is the function's *primary*:
//! its route and queue triggers are the function's. A version is *served* (installed on the
//! workers) while traffic or a tag points at it; the others are kept, by digest, to roll back
//! to.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::manifest::Manifest;
use crate::router::Target;

/// Versions kept per function by default (older ones are collected unless traffic or a tag
/// points at them).
pub const DEFAULT_KEEP_VERSIONS: usize = 1000;

/// Versions a split may name at most.
pub const MAX_SPLIT: usize = 16;

/// What is stored about one deployed function.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "Stored")]
pub struct Record {
    pub name: String,
    /// Kept versions, oldest first; never empty.
    pub versions: Vec<Version>,
    pub traffic: Traffic,
    /// Tag -> version.
    #[serde(default)]
    pub tags: BTreeMap<String, u64>,
    /// The number the next deploy gets: numbers are never reused, even after collection.
    pub next_version: u64,
    /// Counts changes (one per deploy, split, rollback or tag change, set by whoever makes it);
    /// a store commits a record only over the revision before it, so that two processes
    /// changing one function at once cannot both win.
    pub revision: u64,
}

/// One immutable version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Version {
    pub number: u64,
    /// sha256 of the component bytes.
    pub digest: String,
    /// The route its manifest gives (the function's while it is the primary).
    pub route: String,
    pub deployed_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The manifest it was deployed with (server side: without `component` and `build`).
    pub manifest: Manifest,
}

/// How a function's calls split between its versions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Traffic {
    /// `(version, weight)`; weights are relative (90/10 and 9/1 split alike).
    pub split: Vec<(u64, u32)>,
    /// A request header whose value keeps a caller on one version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
}

/// What a deploy adds.
#[derive(Clone, Debug)]
pub struct Draft {
    pub digest: String,
    pub route: String,
    pub manifest: Manifest,
    pub message: Option<String>,
    /// Whether it takes all traffic at once (else none, until `wafer traffic` gives it some).
    pub takes_traffic: bool,
}

/// A record as older wafer wrote it (one version, no history), or as now.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Now {
        name: String,
        versions: Vec<Version>,
        traffic: Traffic,
        #[serde(default)]
        tags: BTreeMap<String, u64>,
        next_version: u64,
        revision: u64,
    },
    Single(Box<Single>),
}

#[derive(Deserialize)]
struct Single {
    name: String,
    version: u64,
    digest: String,
    route: String,
    deployed_at_ms: u64,
    manifest: Manifest,
}

impl TryFrom<Stored> for Record {
    type Error = String;

    fn try_from(stored: Stored) -> Result<Record, String> {
        let record = match stored {
            Stored::Now {
                name,
                versions,
                traffic,
                tags,
                next_version,
                revision,
            } => Record {
                name,
                versions,
                traffic,
                tags,
                next_version,
                revision,
            },
            Stored::Single(single) => {
                let Single {
                    name,
                    version,
                    digest,
                    route,
                    deployed_at_ms,
                    manifest,
                } = *single;
                Record {
                    versions: vec![Version {
                        number: version,
                        digest,
                        route,
                        deployed_at_ms,
                        message: None,
                        manifest,
                    }],
                    traffic: Traffic {
                        split: vec![(version, 1)],
                        sticky_header: None,
                    },
                    tags: BTreeMap::new(),
                    next_version: version + 1,
                    revision: version,
                    name,
                }
            }
        };
        if record.versions.is_empty() {
            return Err(format!("record of `{}` has no versions", record.name));
        }
        if record.traffic.split.iter().all(|&(_, w)| w == 0) {
            return Err(format!("record of `{}` sends no traffic", record.name));
        }
        Ok(record)
    }
}

impl Record {
    /// A new function's record, its first version taking all traffic.
    pub fn first(name: &str, draft: Draft, now_ms: u64) -> Result<Record, ApiError> {
        if !draft.takes_traffic {
            return Err(ApiError::BadRequest(format!(
                "`{name}` is new: its first version takes all traffic (deploy it without --no-traffic)"
            )));
        }
        let mut record = Record {
            name: name.to_string(),
            versions: Vec::new(),
            traffic: Traffic::default(),
            tags: BTreeMap::new(),
            next_version: 1,
            revision: 0,
        };
        record.add(draft, now_ms, DEFAULT_KEEP_VERSIONS);
        record.revision = 1;
        Ok(record)
    }

    /// Adds a version (all traffic to it, or none) and collects versions beyond `keep`.
    /// Returns the new version's number.
    pub fn add(&mut self, draft: Draft, now_ms: u64, keep: usize) -> u64 {
        let number = self.next_version;
        self.versions.push(Version {
            number,
            digest: draft.digest,
            route: draft.route,
            deployed_at_ms: now_ms,
            message: draft.message.filter(|m| !m.is_empty()),
            manifest: draft.manifest,
        });
        if draft.takes_traffic {
            self.traffic.split = vec![(number, 1)];
        }
        self.next_version += 1;
        self.collect(keep);
        number
    }

    /// Drops versions older than the newest `keep`, except those traffic or a tag points at.
    pub fn collect(&mut self, keep: usize) {
        let pinned = self.served();
        let older = self.versions.len().saturating_sub(keep.max(1));
        let mut at = 0;
        self.versions.retain(|v| {
            at += 1;
            at > older || pinned.contains(&v.number)
        });
    }

    /// Sets the split: each `(selector, weight)`, where a selector is a number, a tag or
    /// `latest`. Keeps the sticky header unless `sticky` says otherwise (`Some(None)` clears it).
    pub fn set_traffic(
        &mut self,
        split: &[(String, u32)],
        sticky: Option<Option<String>>,
    ) -> Result<(), ApiError> {
        if split.is_empty() || split.len() > MAX_SPLIT {
            return Err(ApiError::BadRequest(format!(
                "a split names 1 to {MAX_SPLIT} versions, not {}",
                split.len()
            )));
        }
        let mut resolved: Vec<(u64, u32)> = Vec::new();
        for (selector, weight) in split {
            let version = self.resolve(selector)?;
            if resolved.iter().any(|&(v, _)| v == version) {
                return Err(ApiError::BadRequest(format!(
                    "version {version} is named twice in the split"
                )));
            }
            resolved.push((version, *weight));
        }
        if resolved.iter().all(|&(_, w)| w == 0) {
            return Err(ApiError::BadRequest(
                "a split needs a weight above 0 somewhere".into(),
            ));
        }
        resolved.retain(|&(_, w)| w > 0);
        if let Some(Some(header)) = &sticky
            && http::header::HeaderName::try_from(header.as_str()).is_err()
        {
            return Err(ApiError::BadRequest(format!(
                "`{header}` is not a header name"
            )));
        }
        self.traffic.split = resolved;
        if let Some(sticky) = sticky {
            self.traffic.sticky_header = sticky.map(|h| h.to_ascii_lowercase());
        }
        Ok(())
    }

    /// Sends all traffic to `to`, or by default back from where the function is going: while
    /// calls split between versions (a canary), to the oldest of them; otherwise to the newest
    /// kept version older than the one taking it all. Returns the version rolled back to.
    pub fn rollback(&mut self, to: Option<&str>) -> Result<u64, ApiError> {
        let version = match to {
            Some(selector) => self.resolve(selector)?,
            None if self.traffic.split.len() > 1 => self
                .traffic
                .split
                .iter()
                .map(|&(v, _)| v)
                .min()
                .expect("a split of several"),
            None => {
                let primary = self.primary().number;
                self.versions
                    .iter()
                    .rev()
                    .map(|v| v.number)
                    .find(|&n| n < primary)
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "`{}` has no version before {primary} to roll back to",
                            self.name
                        ))
                    })?
            }
        };
        self.traffic.split = vec![(version, 1)];
        Ok(version)
    }

    /// Points `tag` at `version` (a number, a tag or `latest`), or removes it (`None`).
    pub fn tag(&mut self, tag: &str, version: Option<&str>) -> Result<Option<u64>, ApiError> {
        validate_tag(tag)?;
        let version = match version {
            Some(selector) => {
                let v = self.resolve(selector)?;
                self.tags.insert(tag.to_string(), v);
                Some(v)
            }
            None => {
                if self.tags.remove(tag).is_none() {
                    return Err(ApiError::NotFound(format!(
                        "`{}` has no tag `{tag}`",
                        self.name
                    )));
                }
                None
            }
        };
        Ok(version)
    }

    /// The kept version `selector` names: a number, a tag, or `latest`.
    pub fn resolve(&self, selector: &str) -> Result<u64, ApiError> {
        let selector = selector.trim();
        let number = if selector == "latest" {
            self.latest().number
        } else if let Ok(n) = selector.parse::<u64>() {
            n
        } else {
            *self.tags.get(selector).ok_or_else(|| {
                ApiError::NotFound(format!("`{}` has no tag `{selector}`", self.name))
            })?
        };
        if self.version(number).is_none() {
            return Err(ApiError::NotFound(format!(
                "`{}` has no version {number}{}",
                self.name,
                if number < self.next_version {
                    " (it was collected)"
                } else {
                    ""
                }
            )));
        }
        Ok(number)
    }

    pub fn version(&self, number: u64) -> Option<&Version> {
        self.versions
            .binary_search_by_key(&number, |v| v.number)
            .ok()
            .map(|at| &self.versions[at])
    }

    /// The newest kept version.
    pub fn latest(&self) -> &Version {
        self.versions.last().expect("a record has a version")
    }

    /// The version carrying the most traffic (the newest of equals): the function's route and
    /// queue triggers are its.
    pub fn primary(&self) -> &Version {
        self.traffic
            .split
            .iter()
            .max_by_key(|&&(v, w)| (w, v))
            .and_then(|&(v, _)| self.version(v))
            .unwrap_or_else(|| self.latest())
    }

    pub fn route(&self) -> &str {
        &self.primary().route
    }

    /// Versions the workers serve: those traffic or a tag points at.
    pub fn served(&self) -> BTreeSet<u64> {
        self.traffic
            .split
            .iter()
            .map(|&(v, _)| v)
            .chain(self.tags.values().copied())
            .collect()
    }

    /// This version's share of calls, in percent (0 if it takes none).
    pub fn share(&self, version: u64) -> f64 {
        let total: u64 = self.traffic.split.iter().map(|&(_, w)| u64::from(w)).sum();
        let mine: u64 = self
            .traffic
            .split
            .iter()
            .filter(|&&(v, _)| v == version)
            .map(|&(_, w)| u64::from(w))
            .sum();
        if total == 0 {
            0.0
        } else {
            mine as f64 * 100.0 / total as f64
        }
    }

    /// The tags pointing at `version`.
    pub fn tags_of(&self, version: u64) -> Vec<String> {
        self.tags
            .iter()
            .filter(|&(_, &v)| v == version)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// How calls pick a version: the split, and as pins every served version's number and
    /// every tag.
    pub fn target(&self) -> Target {
        let pins = self
            .served()
            .into_iter()
            .map(|v| (v.to_string(), v))
            .chain(self.tags.iter().map(|(t, &v)| (t.clone(), v)));
        Target::new(
            &self.traffic.split,
            self.traffic.sticky_header.as_deref(),
            pins,
        )
    }

    /// Every digest its kept versions use.
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        self.versions.iter().map(|v| v.digest.as_str())
    }
}

/// Tags are lowercase names that cannot be taken for a number or `latest`.
pub fn validate_tag(tag: &str) -> Result<(), ApiError> {
    let ok = !tag.is_empty()
        && tag.len() <= 63
        && tag.starts_with(|c: char| c.is_ascii_lowercase())
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && tag != "latest";
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid tag `{tag}`: a lowercase letter, then letters, digits or '-' (at most 63), and not `latest`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(digest: &str, takes_traffic: bool) -> Draft {
        Draft {
            digest: digest.into(),
            route: "/f".into(),
            manifest: Manifest::default(),
            message: None,
            takes_traffic,
        }
    }

    fn with_versions(n: u64) -> Record {
        let mut r = Record::first("f", draft("d1", true), 0).unwrap();
        for i in 2..=n {
            r.add(draft(&format!("d{i}"), true), i, DEFAULT_KEEP_VERSIONS);
        }
        r
    }

    #[test]
    fn deploys_number_versions_and_take_traffic() {
        let mut r = with_versions(3);
        assert_eq!(r.primary().number, 3);
        assert_eq!(r.served(), BTreeSet::from([3]));
        let n = r.add(draft("d4", false), 4, DEFAULT_KEEP_VERSIONS);
        assert_eq!((n, r.primary().number), (4, 3), "--no-traffic takes none");
        assert_eq!(r.latest().number, 4);
        assert!(Record::first("g", draft("d", false), 0).is_err());
    }

    #[test]
    fn rollback_goes_to_the_version_before_the_primary_or_the_one_named() {
        let mut r = with_versions(3);
        assert_eq!(r.rollback(None).unwrap(), 2);
        assert_eq!(r.rollback(None).unwrap(), 1);
        assert!(r.rollback(None).is_err(), "nothing before 1");
        assert_eq!(r.rollback(Some("3")).unwrap(), 3);
        assert_eq!(r.traffic.split, vec![(3, 1)]);
        // A canary in progress goes back to the older side, whichever carries more.
        r.set_traffic(&[("2".into(), 10), ("3".into(), 90)], None)
            .unwrap();
        assert_eq!(r.rollback(None).unwrap(), 2);
        assert_eq!(r.traffic.split, vec![(2, 1)]);
    }

    #[test]
    fn splits_resolve_tags_and_latest_and_refuse_unknown_versions() {
        let mut r = with_versions(8);
        r.tag("canary", Some("8")).unwrap();
        r.set_traffic(&[("7".into(), 90), ("canary".into(), 10)], None)
            .unwrap();
        assert_eq!(r.traffic.split, vec![(7, 90), (8, 10)]);
        assert_eq!(r.primary().number, 7);
        assert!((r.share(8) - 10.0).abs() < 1e-9);
        assert!(r.set_traffic(&[("99".into(), 1)], None).is_err());
        assert!(r.set_traffic(&[("7".into(), 0)], None).is_err());
        assert!(
            r.set_traffic(&[("7".into(), 1), ("7".into(), 1)], None)
                .is_err()
        );
        r.set_traffic(&[("latest".into(), 1)], Some(Some("X-User".into())))
            .unwrap();
        assert_eq!(r.traffic.split, vec![(8, 1)]);
        assert_eq!(r.traffic.sticky_header.as_deref(), Some("x-user"));
    }

    #[test]
    fn collection_keeps_what_traffic_or_a_tag_points_at() {
        let mut r = with_versions(5);
        r.tag("old", Some("1")).unwrap();
        r.set_traffic(&[("2".into(), 1), ("5".into(), 1)], None)
            .unwrap();
        r.add(draft("d6", false), 6, 3);
        let kept: Vec<u64> = r.versions.iter().map(|v| v.number).collect();
        assert_eq!(
            kept,
            vec![1, 2, 4, 5, 6],
            "3 goes; 1 (tag) and 2 (traffic) stay"
        );
        assert!(matches!(r.resolve("3"), Err(ApiError::NotFound(m)) if m.contains("collected")));
        r.add(draft("d7", true), 7, 3);
        let kept: Vec<u64> = r.versions.iter().map(|v| v.number).collect();
        assert_eq!(
            kept,
            vec![1, 5, 6, 7],
            "2 lost its traffic; 4 is past the newest 3"
        );
        r.tag("old", None).unwrap();
        assert!(r.tag("old", None).is_err());
        assert!(
            r.tag("7", Some("1")).is_err(),
            "a tag may not look like a number"
        );
        assert!(r.tag("latest", Some("1")).is_err());
    }

    #[test]
    fn pins_reach_served_versions_only() {
        let mut r = with_versions(3);
        r.tag("canary", Some("2")).unwrap();
        let t = r.target();
        let pin = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(crate::router::VERSION_HEADER, v.parse().unwrap());
            t.pick(&h)
        };
        assert_eq!(pin("canary"), Ok(2));
        assert_eq!(pin("2"), Ok(2));
        assert_eq!(pin("3"), Ok(3));
        assert!(
            pin("1").is_err(),
            "kept but neither tagged nor taking traffic"
        );
    }

    #[test]
    fn a_record_written_before_versions_reads_as_one_version() {
        let old = serde_json::json!({
            "name": "f", "version": 4, "digest": "abc", "route": "/f",
            "deployed_at_ms": 5, "manifest": {}
        });
        let r: Record = serde_json::from_value(old).unwrap();
        assert_eq!(r.versions.len(), 1);
        assert_eq!((r.primary().number, r.next_version), (4, 5));
        let again: Record = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
}
