//! Rolling metrics of this isolate: the last hour in one-minute buckets, per
//! route and per provider. Each finished request is recorded once, from its
//! log line: requests, errors, failovers (more than one attempt), latency and
//! time to first token (as fixed histograms, for percentiles), tokens and
//! cost.
//!
//! Memory is fixed: the series are made from the configuration (one per
//! route, one per provider), each holds 60 buckets, and a bucket is reused
//! when its minute comes round again. Percentiles come from histograms with
//! fixed bounds, so they are the bound of the bin the rank falls in.

use crate::log::RequestLog;
use crate::record::Outcome;
use serde_json::{json, Value};

/// Minutes in the window.
pub const MINUTES: usize = 60;
const MINUTE_MS: u64 = 60_000;

/// Upper bounds (ms) of the histogram bins; one more bin holds the rest.
const BOUNDS: [u32; 29] = [
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500,
    10_000, 15_000, 20_000, 30_000, 60_000, 120_000,
];
const BINS: usize = BOUNDS.len() + 1;
const LAST: u32 = 120_000;

/// A latency histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram([u32; BINS]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram([0; BINS])
    }
}

impl Histogram {
    pub fn add(&mut self, ms: u64) {
        let i = BOUNDS.iter().position(|&b| ms <= u64::from(b)).unwrap_or(BOUNDS.len());
        if let Some(n) = self.0.get_mut(i) {
            *n = n.saturating_add(1);
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|&n| u64::from(n)).sum()
    }

    /// The `q` quantile (0..1): the upper bound of the bin holding that rank;
    /// beyond the last bound, twice it. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.0.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(BOUNDS.get(i).map_or(2 * u64::from(LAST), |&b| u64::from(b)));
            }
        }
        None
    }
}

/// One minute of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bucket {
    /// Minutes since the epoch this bucket holds (0: never used).
    pub minute: u64,
    pub requests: u32,
    pub errors: u32,
    pub failovers: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub latency: Histogram,
    pub ttft: Histogram,
}

impl Bucket {
    fn merge(&mut self, o: &Bucket) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.failovers += o.failovers;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cost_usd += o.cost_usd;
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
    }

    fn to_json(self) -> Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "failovers": self.failovers,
            "latency_p50_ms": self.latency.quantile(0.5),
            "latency_p95_ms": self.latency.quantile(0.95),
            "ttft_p50_ms": self.ttft.quantile(0.5),
            "ttft_p95_ms": self.ttft.quantile(0.95),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
        })
    }
}

/// The last hour of one route or provider.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    buckets: Vec<Bucket>,
}

impl Series {
    fn new(name: String) -> Series {
        Series { name, buckets: vec![Bucket::default(); MINUTES] }
    }

    /// The bucket of `minute`, emptied if it held an older minute.
    fn bucket(&mut self, minute: u64) -> Option<&mut Bucket> {
        let b = self.buckets.get_mut((minute % MINUTES as u64) as usize)?;
        if b.minute != minute {
            *b = Bucket { minute, ..Bucket::default() };
        }
        Some(b)
    }

    /// The buckets of the last hour up to `now_ms`, oldest first.
    pub fn window(&self, now_ms: u64) -> Vec<&Bucket> {
        let now = now_ms / MINUTE_MS;
        let mut v: Vec<&Bucket> = self
            .buckets
            .iter()
            .filter(|b| b.minute > 0 && b.minute <= now && now - b.minute < MINUTES as u64)
            .collect();
        crate::short_sort::sort_by_key(&mut v, |b| b.minute);
        v
    }

    /// The window's totals.
    pub fn totals(&self, now_ms: u64) -> Bucket {
        let mut t = Bucket::default();
        for b in self.window(now_ms) {
            t.merge(b);
        }
        t
    }

    fn to_json(&self, now_ms: u64) -> Value {
        let minutes: Vec<Value> = self
            .window(now_ms)
            .into_iter()
            .map(|b| {
                let mut v = b.to_json();
                if let Value::Object(m) = &mut v {
                    m.insert("t_ms".into(), json!(b.minute * MINUTE_MS));
                }
                v
            })
            .collect();
        json!({"name": self.name, "totals": self.totals(now_ms).to_json(), "minutes": minutes})
    }
}

/// Every route's and provider's series.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub routes: Vec<Series>,
    pub providers: Vec<Series>,
}

impl Metrics {
    pub fn new(routes: impl IntoIterator<Item = String>, providers: impl IntoIterator<Item = String>) -> Metrics {
        Metrics {
            routes: routes.into_iter().map(Series::new).collect(),
            providers: providers.into_iter().map(Series::new).collect(),
        }
    }

    /// Records a finished request (chat requests only: those with a route).
    pub fn record(&mut self, log: &RequestLog, now_ms: u64) {
        let Some(route) = log.route.as_deref() else { return };
        let minute = now_ms / MINUTE_MS;
        let ok = matches!(log.outcome, Some(Outcome::Ok | Outcome::OkContinued | Outcome::OkFromMirror));
        let add = |b: &mut Bucket| {
            b.requests += 1;
            b.errors += u32::from(!ok);
            b.failovers += u32::from(log.attempts.len() > 1);
            if let Some(u) = &log.usage {
                b.prompt_tokens += u.prompt_tokens;
                b.completion_tokens += u.completion_tokens;
            }
            b.cost_usd += log.cost_usd.unwrap_or(0.0);
            b.latency.add(log.latency_ms);
            if let Some(t) = log.first_token_ms {
                b.ttft.add(t);
            }
        };
        if let Some(b) = self.routes.iter_mut().find(|s| s.name == route).and_then(|s| s.bucket(minute)) {
            add(b);
        }
        if let Some(p) = log.provider.as_deref() {
            if let Some(b) = self.providers.iter_mut().find(|s| s.name == p).and_then(|s| s.bucket(minute)) {
                add(b);
            }
        }
    }

    /// `GET /v1/metrics`: this isolate's window, said to be this isolate's.
    pub fn to_json(&self, now_ms: u64) -> Value {
        let all = |v: &[Series]| v.iter().map(|s| s.to_json(now_ms)).collect::<Vec<_>>();
        json!({
            "scope": "isolate",
            "note": "this isolate's last hour only; other isolates serve other requests",
            "now_ms": now_ms,
            "minute_ms": MINUTE_MS,
            "routes": all(&self.routes),
            "providers": all(&self.providers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Usage;
    use crate::record::AttemptRecord;

    fn log(route: &str, provider: &str, latency: u64, outcome: Outcome, attempts: usize) -> RequestLog {
        let a = AttemptRecord {
            target: "t".into(),
            provider: provider.into(),
            model: "m".into(),
            status: None,
            kind: None,
            latency_ms: 1,
            message: None,
        };
        RequestLog {
            route: Some(route.into()),
            provider: Some(provider.into()),
            outcome: Some(outcome),
            latency_ms: latency,
            attempts: vec![a; attempts],
            usage: Some(Usage { prompt_tokens: 10, completion_tokens: 5, ..Default::default() }),
            cost_usd: Some(0.5),
            ..Default::default()
        }
    }

    fn metrics() -> Metrics {
        Metrics::new(["chat".to_owned()], ["openai".to_owned(), "cohere".to_owned()])
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn counts_per_route_and_provider() {
        let mut m = metrics();
        m.record(&log("chat", "openai", 100, Outcome::Ok, 1), T0);
        m.record(&log("chat", "openai", 200, Outcome::Ok, 2), T0 + 1_000);
        m.record(&log("chat", "cohere", 300, Outcome::Exhausted, 3), T0 + 2_000);
        m.record(&log("unknown", "openai", 1, Outcome::Ok, 1), T0);
        m.record(&RequestLog::default(), T0); // not a chat request
        let t = m.routes[0].totals(T0 + 2_000);
        assert_eq!((t.requests, t.errors, t.failovers), (3, 1, 2));
        assert_eq!((t.prompt_tokens, t.completion_tokens), (30, 15));
        assert!((t.cost_usd - 1.5).abs() < 1e-12);
        let oa = m.providers[0].totals(T0 + 2_000);
        assert_eq!((oa.requests, oa.errors, oa.failovers), (3, 0, 1), "the unknown route still counts for openai");
        assert_eq!(m.providers[1].totals(T0 + 2_000).errors, 1);
    }

    #[test]
    fn the_window_rolls_and_reuses_its_buckets() {
        let mut m = metrics();
        for i in 0..90u64 {
            m.record(&log("chat", "openai", 10, Outcome::Ok, 1), T0 + i * MINUTE_MS);
        }
        let now = T0 + 89 * MINUTE_MS;
        let w = m.routes[0].window(now);
        assert_eq!(w.len(), MINUTES, "only the last hour");
        assert_eq!(w[0].minute, now / MINUTE_MS - 59);
        assert_eq!(m.routes[0].totals(now).requests, 60);
        // Half an hour later, half the window has aged out; later still, all of it.
        assert_eq!(m.routes[0].totals(now + 30 * MINUTE_MS).requests, 30);
        assert_eq!(m.routes[0].totals(now + 61 * MINUTE_MS).requests, 0);
        // Memory is fixed: the buckets were reused, never added.
        assert_eq!(m.routes[0].buckets.len(), MINUTES);
        // A new minute at a reused slot starts empty.
        m.record(&log("chat", "openai", 10, Outcome::Ok, 1), now + 60 * MINUTE_MS);
        assert_eq!(m.routes[0].totals(now + 60 * MINUTE_MS).requests, 1);
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100 {
            h.add(ms);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.95), Some(100));
        assert_eq!(h.quantile(0.0), Some(1));
        let mut slow = Histogram::default();
        slow.add(10_000_000);
        assert_eq!(slow.quantile(0.5), Some(240_000), "beyond the last bound");
        // Each bin saturates instead of wrapping.
        let mut full = Histogram([u32::MAX; BINS]);
        full.add(1);
        assert_eq!(full.0[0], u32::MAX);
    }

    #[test]
    fn ttft_only_from_streams_and_json_shape() {
        let mut m = metrics();
        let mut s = log("chat", "openai", 900, Outcome::Ok, 1);
        s.first_token_ms = Some(120);
        m.record(&s, T0);
        m.record(&log("chat", "openai", 80, Outcome::Ok, 1), T0);
        let t = m.routes[0].totals(T0);
        assert_eq!(t.ttft.count(), 1);
        assert_eq!(t.ttft.quantile(0.5), Some(150));
        let j = m.to_json(T0);
        assert_eq!(j["scope"], "isolate");
        assert_eq!(j["routes"][0]["totals"]["requests"], 2);
        assert_eq!(j["routes"][0]["minutes"][0]["t_ms"], (T0 / MINUTE_MS) * MINUTE_MS);
        assert_eq!(j["providers"][1]["totals"]["requests"], 0);
    }
}
