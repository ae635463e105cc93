//! Which function a request path belongs to, and the paths no function may own.
//!
//! Each function owns a route prefix: the route itself and everything below it (`/hello` serves
//! `/hello`, `/hello/` and `/hello/x`, not `/hellox`). When routes nest, the longest prefix wins;
//! two functions may not own the same route. The table is immutable and swapped whole on deploy,
//! so lookups take no lock: one hash probe per path segment, deepest first.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// The prefix the gateway keeps for itself (admin API, health, metrics); no route may start
/// with it.
pub const RESERVED_PREFIX: &str = "/_wafer";

/// A snapshot of route -> function.
#[derive(Default, Debug)]
pub struct RouteTable {
    routes: HashMap<String, Arc<str>>,
}

impl RouteTable {
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> RouteTable {
        RouteTable {
            routes: entries
                .into_iter()
                .map(|(route, function)| (route.to_string(), Arc::from(function)))
                .collect(),
        }
    }

    /// The function owning the longest route that is `path` or a prefix of it at a `/`.
    pub fn lookup(&self, path: &str) -> Option<&Arc<str>> {
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
        self.routes.get(route)
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

    #[test]
    fn longest_prefix_at_segment_boundaries() {
        let t = RouteTable::new([("/hello", "hello"), ("/api", "api"), ("/api/v2", "v2")]);
        let f = |p| t.lookup(p).map(|f| f.to_string());
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
        let t = RouteTable::new([("/", "root"), ("/a", "a")]);
        assert_eq!(&**t.lookup("/zzz/y").unwrap(), "root");
        assert_eq!(&**t.lookup("/").unwrap(), "root");
        assert_eq!(&**t.lookup("/a/b").unwrap(), "a");
    }
}
