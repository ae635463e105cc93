//! Fuzzing routes and request paths with proptest: any route text is validated or refused
//! without a panic, and any request path finds the function owning the longest route that is
//! the path or a prefix of it at a `/`, or none: never a route that is not such a prefix.
//! Traffic splits and version pins from any header values pick a served version or say why
//! not. `PROPTEST_CASES` sets the run's length (CI runs the default, a short run).

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use wafer_gateway::manifest::validate_route;
use wafer_gateway::router::{Route, RouteTable, Target};

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,3}",
        Just(".".to_string()),
        Just("..".to_string()),
        Just(String::new()),
        Just("_wafer".to_string()),
        "\\PC{0,6}",
        "%[0-9A-F]{2}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (proptest::collection::vec(segment(), 0..6), any::<bool>()).prop_map(|(segments, slash)| {
        let mut path = format!("/{}", segments.join("/"));
        if slash {
            path.push('/');
        }
        path
    })
}

fn table(routes: &[String]) -> RouteTable {
    RouteTable::new(routes.iter().enumerate().map(|(i, route)| {
        let target = Arc::new(Target::new(&[(1, 100)], None, []));
        let to = Route {
            function: Arc::from(format!("f{i}")),
            route: Arc::from(route.as_str()),
            target,
        };
        (route.clone(), to)
    }))
}

/// Whether `route` is `path`, or a prefix of it that ends at a `/`.
fn owns(route: &str, path: &str) -> bool {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    route == "/"
        || path == route
        || path
            .strip_prefix(route)
            .is_some_and(|rest| rest.starts_with('/'))
}

proptest! {
    #[test]
    fn any_route_text_is_validated_or_refused(text in "\\PC{0,80}") {
        if let Ok(route) = validate_route(&text) {
            prop_assert!(route.starts_with('/'));
            prop_assert!(!route.to_ascii_lowercase().starts_with("/_wafer"));
            prop_assert_eq!(validate_route(&route).ok(), Some(route.clone()), "valid routes stay as they are");
        }
    }

    #[test]
    fn any_path_finds_its_longest_owning_route(
        candidates in proptest::collection::vec(path(), 0..8),
        request in path(),
    ) {
        let mut routes: Vec<String> = candidates
            .iter()
            .filter_map(|c| validate_route(c).ok())
            .collect();
        routes.sort();
        routes.dedup();
        let table = table(&routes);
        let expected = routes
            .iter()
            .filter(|r| owns(r, &request))
            .max_by_key(|r| if r.as_str() == "/" { 0 } else { r.len() });
        let found = table.lookup(&request).map(|r| r.route.to_string());
        prop_assert_eq!(found.as_ref(), expected, "{:?} for {}", routes, request);
    }

    #[test]
    fn any_split_and_pin_picks_a_served_version_or_says_why(
        split in proptest::collection::vec((0..5u64, 0..1000u32), 0..5),
        pin in proptest::option::of("\\PC{0,12}"),
        sticky_value in proptest::option::of("[ -~]{0,20}"),
        tags in proptest::collection::vec(("[a-z0-9]{1,6}", 0..5u64), 0..3),
    ) {
        let target = Target::new(&split, Some("x-user"), tags);
        let mut headers = HeaderMap::new();
        if let Some(pin) = pin.and_then(|p| HeaderValue::from_str(&p).ok()) {
            headers.insert("x-wafer-version", pin);
        }
        if let Some(value) = sticky_value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert("x-user", value);
        }
        let served: Vec<u64> = split.iter().filter(|(_, w)| *w > 0).map(|(v, _)| *v).collect();
        if let Ok(version) = target.pick(&headers)
            && !headers.contains_key("x-wafer-version")
        {
            if served.is_empty() {
                prop_assert_eq!(version, 0);
            } else {
                prop_assert!(served.contains(&version), "{} not in {:?}", version, served);
            }
        }
    }
}
