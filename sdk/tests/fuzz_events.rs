//! Fuzzing the SDK's CloudEvents parsing with proptest: `ce-*` headers of any name and value
//! (percent-encoded or not), any content type and body, and batch bodies. Parsing never panics,
//! and an event's data and wafer's extensions can always be read. `PROPTEST_CASES` sets the
//! run's length (CI runs the default, a short run).

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use wafer_sdk::event::{EventExt, parse_event, parse_events};

fn header() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just("ce-id".to_string()),
        Just("ce-source".to_string()),
        Just("ce-type".to_string()),
        Just("ce-specversion".to_string()),
        Just("ce-time".to_string()),
        Just("ce-attempt".to_string()),
        Just("ce-subject".to_string()),
        Just("content-type".to_string()),
        "ce-[a-z0-9]{0,24}",
        "[a-z-]{1,20}",
    ];
    let value = prop_oneof![
        Just("1.0".to_string()),
        Just("0.3".to_string()),
        Just("application/cloudevents-batch+json".to_string()),
        Just("application/json".to_string()),
        "[0-9]{1,4}-[0-9]{2}-[0-9]{2}T[0-9:.]{0,12}Z?",
        "%[0-9A-Fa-f]{0,2}[ -~]{0,10}",
        "[ -~]{0,40}",
    ];
    (name, value)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        "\\PC{0,80}".prop_map(String::into_bytes),
        Just(
            br#"[{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":1}}]"#.to_vec()
        ),
        Just(
            br#"[{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"}]"#
                .to_vec()
        ),
        Just(br#"[{"specversion":"9","id":1}]"#.to_vec()),
    ]
}

proptest! {
    #[test]
    fn any_headers_and_body_parse_or_are_refused(
        headers in proptest::collection::vec(header(), 0..10),
        body in body(),
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                map.append(name, value);
            }
        }
        if let Ok(event) = parse_event(&map, body.clone()) {
            let _ = event.data_bytes();
            let _ = event.attempt();
            let _ = event.extension_str("attempt");
            let _ = event.json::<serde_json::Value>();
        }
        if let Ok(events) = parse_events(&map, body) {
            for event in events {
                let _ = event.data_bytes();
                let _ = event.attempt();
            }
        }
    }
}
