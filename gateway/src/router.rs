//! Which function a request path belongs to and which of its versions serves the call, and the
//! paths no function may own.
//!
//! Each function owns a route prefix: the route itself and everything below it (`/hello` serves
//! `/hello`, `/hello/` and `/hello/x`, not `/hellox`). When routes nest, the longest prefix wins;
//! two functions may not own the same route. The table is immutable and swapped whole on every
//! change, so lookups take no lock: one hash probe per path segment, deepest first. Each route
//! carries its function's [`Target`]: how calls split between versions by weight, and which
//! versions a call may pin with [`VERSION_HEADER`].

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderMap;
use http::header::HeaderName;
use sha2::{Digest, Sha256};

/// The prefix the gateway keeps for itself (admin API, health, metrics); no route may start
/// with it.
pub const RESERVED_PREFIX: &str = "/_wafer";

/// The request header that pins a call to a version, by number or tag; responses carry it too,
/// naming the version that served them.
pub const VERSION_HEADER: &str = "x-wafer-version";

/// Which version of a function takes a call.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `(cumulative weight, version)`, in the order given; the last bound is the total.
    split: Box<[(u64, u64)]>,
    /// A header whose value keeps a caller on one version.
    sticky: Option<HeaderName>,
    /// What a call may pin: each served version's number and each tag, to a version.
    pins: HashMap<String, u64>,
}

/// Why a pinned call has no version to go to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{VERSION_HEADER}: {0}` names no version that is tagged or takes traffic")]
pub struct NotPinnable(pub String);

impl Target {
    /// `split` gives each version its weight (versions with weight 0 are left out); `pins`
    /// the names a call may pin. A split with no weight sends everything to version 0, which
    /// no function has, so that a misuse shows as an error instead of a hidden choice.
    pub fn new(
        split: &[(u64, u32)],
        sticky: Option<&str>,
        pins: impl IntoIterator<Item = (String, u64)>,
    ) -> Target {
        let mut total = 0u64;
        let mut bounds = Vec::with_capacity(split.len());
        for &(version, weight) in split {
            if weight > 0 {
                total += u64::from(weight);
                bounds.push((total, version));
            }
        }
        if bounds.is_empty() {
            bounds.push((1, 0));
        }
        Target {
            split: bounds.into(),
            sticky: sticky.and_then(|h| HeaderName::try_from(h).ok()),
            pins: pins.into_iter().collect(),
        }
    }

    /// The version for a call with these headers: the one pinned by [`VERSION_HEADER`], else
    /// one by weight (by a hash of the sticky header where the call has it, so that a caller
    /// stays on one version while the split stays the same).
    pub fn pick(&self, headers: &HeaderMap) -> Result<u64, NotPinnable> {
        if let Some(pin) = headers.get(VERSION_HEADER) {
            let pin = pin.to_str().unwrap_or("").trim();
            return self
                .pins
                .get(pin)
                .copied()
                .ok_or_else(|| NotPinnable(pin.to_string()));
        }
        let key = self
            .sticky
            .as_ref()
            .and_then(|name| headers.get(name))
            .map(|v| v.as_bytes());
        Ok(self.split(key))
    }

    /// A version by weight: for `key`, always the same one while the split stays the same;
    /// without one, at random.
    pub fn split(&self, key: Option<&[u8]>) -> u64 {
        if let [(_, only)] = *self.split {
            return only;
        }
        let total = self.split.last().map_or(1, |&(bound, _)| bound);
        let point = match key {
            Some(key) => {
                let hash = Sha256::digest(key);
                u64::from_le_bytes(hash[..8].try_into().expect("8 bytes")) % total
            }
            None => fastrand::u64(..total),
        };
        self.split
            .iter()
            .find(|&&(bound, _)| point < bound)
            .map_or(0, |&(_, version)| version)
    }
}

/// A route's function and how its calls pick a version.
#[derive(Debug)]
pub struct Route {
    pub function: Arc<str>,
    /// The prefix it is routed at (for traces: `http.route`).
    pub route: Arc<str>,
    pub target: Arc<Target>,
}

/// A snapshot of route -> function.
#[derive(Default, Debug)]
pub struct RouteTable {
    routes: HashMap<String, Arc<Route>>,
}

impl RouteTable {
    pub fn new(entries: impl IntoIterator<Item = (String, Route)>) -> RouteTable {
        RouteTable {
            routes: entries
                .into_iter()
                .map(|(route, to)| (route, Arc::new(to)))
                .collect(),
        }
    }

    /// The function owning the longest route that is `path` or a prefix of it at a `/`.
    pub fn lookup(&self, path: &str) -> Option<&Arc<Route>> {
        if self.routes.is_empty() {
            return None;
        }
        let trimmed = match path.strip_suffix('/') {
            Some(t) if !t.is_empty() => t,
            _ => path,
        };
        if let Some(f) = self.routes.get(trimmed) {
            return Some(f);
        }
        let mut rest = trimmed;
        while let Some(cut) = rest.rfind('/') {
            rest = &rest[..cut];
            let key = if rest.is_empty() { "/" } else { rest };
            if let Some(f) = self.routes.get(key) {
                return Some(f);
            }
        }
        None
    }

    /// The function owning exactly `route`, if any.
    pub fn owner(&self, route: &str) -> Option<&Arc<str>> {
        self.routes.get(route).map(|r| &r.function)
    }
}

/// The live table, replaced atomically.
#[derive(Default)]
pub struct Router {
    table: ArcSwap<RouteTable>,
}

impl Router {
    pub fn load(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.table.load()
    }

    pub fn store(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str)]) -> RouteTable {
        RouteTable::new(entries.iter().map(|&(route, function)| {
            let to = Route {
                function: Arc::from(function),
                route: Arc::from(route),
                target: Arc::new(Target::new(&[(1, 1)], None, [])),
            };
            (route.to_string(), to)
        }))
    }

    #[test]
    fn longest_prefix_at_segment_boundaries() {
        let t = table(&[("/hello", "hello"), ("/api", "api"), ("/api/v2", "v2")]);
        let f = |p| t.lookup(p).map(|r| r.function.to_string());
        assert_eq!(f("/hello").as_deref(), Some("hello"));
        assert_eq!(f("/hello/").as_deref(), Some("hello"));
        assert_eq!(f("/hello/a/b").as_deref(), Some("hello"));
        assert_eq!(f("/hellox"), None);
        assert_eq!(f("/api/v2/x").as_deref(), Some("v2"));
        assert_eq!(f("/api/v20").as_deref(), Some("api"));
        assert_eq!(f("/api//v2").as_deref(), Some("api"));
        assert_eq!(f("/"), None);
        assert_eq!(f(""), None);
    }

    #[test]
    fn root_route_catches_the_rest() {
        let t = table(&[("/", "root"), ("/a", "a")]);
        assert_eq!(&*t.lookup("/zzz/y").unwrap().function, "root");
        assert_eq!(&*t.lookup("/").unwrap().function, "root");
        assert_eq!(&*t.lookup("/a/b").unwrap().function, "a");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(k, v)| (HeaderName::try_from(k).unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn weights_split_calls_in_proportion() {
        let t = Target::new(&[(7, 90), (8, 10)], None, []);
        let mut eight = 0;
        for _ in 0..100_000 {
            if t.pick(&HeaderMap::new()).unwrap() == 8 {
                eight += 1;
            }
        }
        // 10% of 100,000, with a margin of over six standard deviations (sd ~95).
        assert!((9_400..=10_600).contains(&eight), "{eight}");
        let zero = Target::new(&[(7, 100), (8, 0)], None, []);
        assert!((0..1000).all(|_| zero.split(None) == 7));
    }

    #[test]
    fn a_sticky_header_keeps_a_caller_on_one_version() {
        let t = Target::new(&[(1, 50), (2, 50)], Some("x-user"), []);
        let mut seen = std::collections::HashSet::new();
        for user in 0..200 {
            let h = headers(&[("x-user", &format!("user-{user}"))]);
            let first = t.pick(&h).unwrap();
            assert!((0..20).all(|_| t.pick(&h).unwrap() == first));
            seen.insert(first);
        }
        assert_eq!(seen.len(), 2, "200 users all landed on one side");
    }

    #[test]
    fn pins_reach_only_named_versions() {
        let pins = [("7".to_string(), 7), ("8".into(), 8), ("canary".into(), 8)];
        let t = Target::new(&[(7, 100)], None, pins);
        assert_eq!(t.pick(&headers(&[(VERSION_HEADER, "canary")])), Ok(8));
        assert_eq!(t.pick(&headers(&[(VERSION_HEADER, " 7 ")])), Ok(7));
        assert_eq!(
            t.pick(&headers(&[(VERSION_HEADER, "3")])),
            Err(NotPinnable("3".into()))
        );
        assert_eq!(t.pick(&HeaderMap::new()), Ok(7));
    }
}
