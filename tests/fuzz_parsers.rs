//! Property tests: no input makes a parser panic (a panic would reset the
//! whole wasm instance). The request parser, every provider's response and
//! error parsers, the SSE parser and the stream translators, and the config
//! parser get arbitrary bytes, and arbitrary JSON built to look like what
//! they expect.

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard::api::ChatRequest;
use switchyard::config::Config;
use switchyard::http::check_body_headers;
use switchyard::providers::{self, Format};
use switchyard::sse::SseParser;
use switchyard::stream::{Relay, Source, StreamSpec};

const FORMATS: [Format; 3] = [Format::OpenAi, Format::Anthropic, Format::Cohere];

/// Arbitrary JSON, a few levels deep, with the field names the parsers look for.
fn arb_json() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "model",
        "messages",
        "role",
        "content",
        "type",
        "text",
        "image_url",
        "url",
        "tool_calls",
        "function",
        "name",
        "arguments",
        "choices",
        "message",
        "delta",
        "usage",
        "error",
        "stop_reason",
        "finish_reason",
        "index",
        "id",
        "input",
        "tool_use",
        "content_block",
        "temperature",
        "max_tokens",
        "stream",
        "tools",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "user",
            "assistant",
            "system",
            "tool",
            "text",
            "image_url",
            "tool_use",
            "end_turn",
            "COMPLETE"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn relay_for(f: Format) -> Relay {
    let spec = StreamSpec {
        client: switchyard::inbound::ClientFormat::Chat,
        id: "chatcmpl-1".into(),
        created: 1,
        include_usage: true,
        choices: 1,
        idle_timeout_ms: 10,
        deadline_ms: 1_000,
        max_event_bytes: 512,
        max_text_bytes: 512,
        namespaced: Vec::new(),
    };
    let source = Source {
        provider: 0,
        target: "p/m".into(),
        model: "m".into(),
        decoder: providers::decoder(f, f == Format::OpenAi, true),
        passthrough: f == Format::OpenAi,
        key: Some("sk-fuzz".into()),
    };
    Relay::new(spec, source, 0, 100)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn request_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ChatRequest::parse(&bytes);
    }

    #[test]
    fn request_parser_never_panics_on_json(v in arb_json(), model in ".{0,8}") {
        let _ = ChatRequest::parse(v.to_string().as_bytes());
        let wrapped = json!({"model": model, "messages": [v.clone()], "tools": [v.clone()], "tool_choice": v});
        let _ = ChatRequest::parse(wrapped.to_string().as_bytes());
    }

    #[test]
    fn response_and_error_parsers_never_panic(v in arb_json(), text in ".{0,64}", status in 100u16..600) {
        for f in FORMATS {
            let _ = providers::parse_chat(f, &v.to_string(), 0);
            let _ = providers::parse_chat(f, &text, 0);
            let _ = providers::classify_error(f, status, &v.to_string());
            let _ = providers::classify_error(f, status, &text);
        }
    }

    #[test]
    fn sse_parser_and_translators_never_panic(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
        events in prop::collection::vec((prop::sample::select(vec![
            "message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop", "error",
            "message-start", "content-delta", "tool-call-start", "tool-call-delta", "message-end", "ping", "",
        ]), arb_json()), 0..10),
    ) {
        let mut p = SseParser::with_limit(256);
        let mut out = Vec::new();
        for c in &chunks {
            let _ = p.feed(c, &mut out);
        }
        p.finish(&mut out);
        for f in FORMATS {
            let mut d = providers::decoder(f, f == Format::OpenAi, true);
            let mut facts = Vec::new();
            for e in &out {
                d.decode(e, &mut facts);
            }
            // The same bytes, and the events, through a whole relay.
            let mut relay = relay_for(f);
            for c in &chunks {
                relay.feed(c, 1);
            }
            for (name, data) in &events {
                let text = if name.is_empty() {
                    format!("data: {data}\n\n")
                } else {
                    format!("event: {name}\ndata: {data}\n\n")
                };
                relay.feed(text.as_bytes(), 2);
                let _ = relay.take_output();
            }
            relay.tick(relay.next_deadline());
            relay.end(3);
            let _ = relay.take_output();
        }
    }

    #[test]
    fn config_parser_never_panics(v in arb_json(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Config::from_json(&v.to_string());
        let _ = Config::from_json(&String::from_utf8_lossy(&bytes));
        let _ = Config::from_json(&json!({"providers": v.clone(), "routes": v}).to_string());
    }

    #[test]
    fn body_header_checks_never_panic(ct in ".{0,40}", cl in ".{0,24}") {
        let _ = check_body_headers(Some(&ct), Some(&cl), 1024);
    }
}

#[test]
fn body_headers_are_checked_before_reading() {
    assert_eq!(check_body_headers(Some("application/json; charset=utf-8"), Some("100"), 1024), None);
    assert_eq!(check_body_headers(None, None, 1024), None);
    assert_eq!(check_body_headers(Some("text/plain"), None, 1024).unwrap().status, 415);
    assert_eq!(
        check_body_headers(None, Some("99999999"), 1024).unwrap().status,
        413,
        "a declared length over the limit"
    );
    assert_eq!(check_body_headers(None, Some("lots"), 1024).unwrap().status, 400);
}
