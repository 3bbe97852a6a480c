//! The relay's own cost per stream event, natively: an OpenAI stream passed
//! through and an Anthropic stream translated, 1,000 events each
//! (`cargo run --release --example relay_cost`). A quick check on the core's
//! share of a stream's CPU; `npm run bench` measures the whole worker.

use std::time::Instant;
use switchyard::providers::{self, Format};
use switchyard::stream::{Relay, Source, StreamSpec};
fn main() {
    let ev = |i: usize| {
        format!("data: {{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n")
    };
    let anth = |i: usize| {
        format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \"}}}}\n\n")
    };
    for (name, fmt, mk) in
        [("openai", Format::OpenAi, &ev as &dyn Fn(usize) -> String), ("anthropic", Format::Anthropic, &anth)]
    {
        let events: Vec<String> = (0..1000).map(mk).collect();
        let t = Instant::now();
        let n = 200;
        for _ in 0..n {
            let spec = StreamSpec {
                client: switchyard::inbound::ClientFormat::Chat,
                id: "x".into(),
                created: 1,
                include_usage: false,
                choices: 1,
                idle_timeout_ms: 1000,
                deadline_ms: u64::MAX / 2,
                max_event_bytes: 1 << 20,
                max_text_bytes: 1 << 20,
                namespaced: Vec::new(),
            };
            let src = Source {
                provider: 0,
                target: "t".into(),
                model: "m".into(),
                decoder: providers::decoder(fmt, fmt == Format::OpenAi, false),
                passthrough: fmt == Format::OpenAi,
                key: None,
            };
            let mut r = Relay::new(spec, src, 0, 1000);
            for e in &events {
                r.feed(e.as_bytes(), 1);
                std::hint::black_box(r.take_output());
            }
        }
        let per = t.elapsed().as_nanos() as f64 / (n * 1000) as f64;
        println!("{name}: {per:.0} ns per event (native, release)");
    }
}
