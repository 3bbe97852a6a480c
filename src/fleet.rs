//! Fleet-wide usage from the Workers Analytics Engine SQL API: every
//! isolate's data points (see [`crate::analytics`]) summed per gateway key
//! and route over the last day. Only asked when the account id and an API
//! token are set; otherwise `/v1/usage` answers with this isolate's window
//! and says so.

use crate::upstream::{Upstream, UpstreamBody, UpstreamRequest};
use serde_json::{json, Value};

/// The SQL API's default base (overridable, so tests can point at a fake).
pub const DEFAULT_BASE: &str = "https://api.cloudflare.com/client/v4";
/// The dataset the points go to, unless the `ANALYTICS_DATASET` var says.
pub const DEFAULT_DATASET: &str = "switchyard";
/// Largest SQL API answer read.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// Where and as whom to ask.
#[derive(Debug, Clone)]
pub struct Source {
    pub base: String,
    pub account_id: String,
    pub token: String,
    pub dataset: String,
}

/// The base URL is https, or plain http to a loopback host (a local fake):
/// the API token is sent there.
pub fn base_ok(base: &str) -> bool {
    if base.starts_with("https://") {
        return true;
    }
    base.strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .is_some_and(|authority| !authority.contains('@') && crate::config::is_loopback(authority))
}

/// A dataset name goes into the SQL text: letters, digits and `_` only.
pub fn dataset_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Spend, tokens and traffic per gateway key and route over the last day.
pub fn usage_sql(dataset: &str) -> String {
    format!(
        "SELECT blob4 AS key, blob1 AS route, SUM(_sample_interval) AS requests, \
         SUM(_sample_interval * double3) AS prompt_tokens, SUM(_sample_interval * double4) AS completion_tokens, \
         SUM(_sample_interval * double5) AS cost_usd \
         FROM {dataset} WHERE timestamp > NOW() - INTERVAL '1' DAY \
         GROUP BY key, route ORDER BY cost_usd DESC FORMAT JSON"
    )
}

/// Asks the SQL API; the rows (`data`) or why not.
pub async fn query<U: Upstream>(up: &U, src: &Source, sql: String, deadline_ms: u64) -> Result<Vec<Value>, String> {
    let req = UpstreamRequest {
        method: "POST",
        url: format!("{}/accounts/{}/analytics_engine/sql", src.base.trim_end_matches('/'), src.account_id),
        headers: vec![("authorization".into(), format!("Bearer {}", src.token))],
        body: Some(sql),
    };
    let head =
        up.send(&req, deadline_ms).await.map_err(|e| format!("the SQL API could not be reached: {}", e.describe()))?;
    let status = head.status;
    let text = head.body.text(deadline_ms, MAX_ANSWER_BYTES).await.map_err(|e| e.describe())?;
    if status != 200 {
        let said: String = text.chars().take(200).collect();
        return Err(format!("the SQL API answered HTTP {status}: {said}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("the SQL API's answer is not JSON: {e}"))?;
    match v.get("data") {
        Some(Value::Array(rows)) => Ok(rows.clone()),
        _ => Err("the SQL API's answer has no `data` list".into()),
    }
}

/// `/v1/usage` with fleet figures.
pub fn usage_json(rows: Vec<Value>, now_ms: u64) -> Value {
    json!({"scope": "fleet", "window": "last 24 hours", "source": "analytics engine", "now_ms": now_ms, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{TransportError, UpstreamHead};
    use std::cell::RefCell;

    struct Body(String);
    impl UpstreamBody for Body {
        async fn text(self, _: u64, _: u64) -> Result<String, TransportError> {
            Ok(self.0)
        }
        async fn chunk(&mut self, _: u64) -> Result<Option<Vec<u8>>, TransportError> {
            Ok(None)
        }
    }
    struct Fake(u16, &'static str, RefCell<Vec<UpstreamRequest>>);
    impl Upstream for Fake {
        type Body = Body;
        async fn send(&self, req: &UpstreamRequest, _: u64) -> Result<UpstreamHead<Body>, TransportError> {
            self.2.borrow_mut().push(req.clone());
            Ok(UpstreamHead { status: self.0, retry_after: None, retry_after_ms: None, body: Body(self.1.into()) })
        }
    }

    fn src() -> Source {
        Source {
            base: "https://api.example/client/v4/".into(),
            account_id: "acc".into(),
            token: "tok".into(),
            dataset: "switchyard".into(),
        }
    }

    #[test]
    fn asks_the_sql_api_and_reads_its_rows() {
        let fake = Fake(
            200,
            r#"{"meta":[],"data":[{"key":"app","route":"chat","requests":3,"cost_usd":0.5}],"rows":1}"#,
            RefCell::default(),
        );
        let rows = futures_executor::block_on(query(&fake, &src(), usage_sql("switchyard"), 0)).unwrap();
        assert_eq!(rows[0]["key"], "app");
        let sent = &fake.2.borrow()[0];
        assert_eq!(sent.url, "https://api.example/client/v4/accounts/acc/analytics_engine/sql");
        assert_eq!(sent.headers, vec![("authorization".to_owned(), "Bearer tok".to_owned())]);
        assert!(sent.body.as_deref().unwrap().contains("FROM switchyard WHERE"));
        assert_eq!(usage_json(rows, 5)["scope"], "fleet");
        let refused = Fake(403, r#"{"errors":[{"message":"bad token"}]}"#, RefCell::default());
        let e = futures_executor::block_on(query(&refused, &src(), "x".into(), 0)).unwrap_err();
        assert!(e.contains("HTTP 403") && e.contains("bad token"), "{e}");
    }

    #[test]
    fn the_token_only_goes_to_https_or_loopback() {
        assert!(base_ok("https://api.cloudflare.com/client/v4"));
        assert!(base_ok("http://127.0.0.1:9999/client/v4"));
        assert!(!base_ok("http://example.com/client/v4"));
        assert!(!base_ok("http://u:p@127.0.0.1/"));
        assert!(dataset_ok("switchyard_prod") && !dataset_ok("x; DROP") && !dataset_ok(""));
    }
}
