//! `POST /v1/embeddings`: OpenAI's embeddings API over a route's targets
//! with the `embeddings` capability, OpenAI-compatible (`/embeddings`) or
//! Cohere (`/v2/embed`). Vectors from different models are not
//! comparable, so failover stays within one embedding space: the first
//! available target's (`embedding_space`, by default its model), never
//! across to another.

use crate::api::{ApiError, Usage};
use crate::chat::{client_error, find_route, World};
use crate::clock::Clock;
use crate::config::{Format, ProviderConfig, Target};
use crate::dispatch::Build;
use crate::gateway::Gateway;
use crate::http::Reply;
use crate::json::{Dig, JsonText as _};
use crate::log::RequestLog;
use crate::providers::{request_headers, Outbound};
use crate::rng::Rng;
use crate::serve::{serve_whole, Targets};
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::{Upstream, UpstreamRequest};
use crate::whole::{Completion, Finish};
use serde_json::{json, Map, Value};

/// What the client asked to embed.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Texts(Vec<String>),
    /// Token ids: OpenAI-compatible targets only.
    Tokens(Value),
}

#[derive(Debug, Clone)]
pub struct EmbedRequest {
    /// The body as sent (its `model` replaced for each target).
    pub body: Map<String, Value>,
    pub input: Input,
    pub base64: bool,
    pub dimensions: Option<u64>,
}

impl EmbedRequest {
    pub fn parse(body: &[u8]) -> Result<EmbedRequest, ApiError> {
        let v = crate::inbound::read_object(body, "an embeddings request")?;
        let Value::Object(body) = v else { return Err(ApiError::invalid("the request body must be a JSON object")) };
        if body.get("model").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(ApiError::invalid_param("model", "`model` must name a route"));
        }
        let bad = || ApiError::invalid_param("input", "`input` must be a string, a list of strings, or token arrays");
        let input = match body.get("input") {
            Some(Value::String(s)) => Input::Texts(vec![s.clone()]),
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(ApiError::invalid_param("input", "`input` must not be empty"))
            }
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                Input::Texts(items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            }
            Some(tokens @ Value::Array(items)) if items.iter().all(|i| i.is_u64() || i.is_array()) => {
                Input::Tokens(tokens.clone())
            }
            _ => return Err(bad()),
        };
        let base64 = match body.get("encoding_format").and_then(Value::as_str) {
            None | Some("float") => false,
            Some("base64") => true,
            Some(_) => {
                return Err(ApiError::invalid_param("encoding_format", "`encoding_format` must be float or base64"))
            }
        };
        let dimensions = match body.get("dimensions") {
            None | Some(Value::Null) => None,
            Some(d) => Some(
                d.as_u64()
                    .filter(|d| *d >= 1)
                    .ok_or_else(|| ApiError::invalid_param("dimensions", "`dimensions` must be a positive integer"))?,
            ),
        };
        Ok(EmbedRequest { body, input, base64, dimensions })
    }

    pub fn model(&self) -> &str {
        self.body.get("model").and_then(Value::as_str).unwrap_or_default()
    }
}

impl Build for EmbedRequest {
    fn build(&self, out: &Outbound) -> Result<UpstreamRequest, ApiError> {
        let (url, body) = match out.provider.format {
            Format::OpenAi => {
                let mut body = self.body.clone();
                body.insert("model".into(), Value::from(out.model));
                (format!("{}/embeddings", out.provider.base_url), Value::Object(body))
            }
            Format::Cohere => {
                let Input::Texts(texts) = &self.input else {
                    return Err(ApiError::invalid_param("input", "cohere embeds text, not token arrays"));
                };
                let mut body = json!({
                    "model": out.model, "texts": texts,
                    "input_type": "search_document", "embedding_types": ["float"],
                });
                if let (Some(d), Value::Object(m)) = (self.dimensions, &mut body) {
                    m.insert("output_dimension".into(), Value::from(d));
                }
                (format!("{}/v2/embed", out.provider.base_url), body)
            }
            Format::Anthropic => {
                return Err(ApiError::invalid_param("model", "anthropic has no embeddings API"));
            }
        };
        Ok(UpstreamRequest { method: "POST", url, headers: request_headers(out), body: Some(body.json_text()) })
    }
    fn is_stream(&self) -> bool {
        false
    }
}

/// A Cohere `/v2/embed` answer as OpenAI's `list` of embeddings.
pub fn from_cohere(body: &str, model: &str, base64: bool) -> Result<(String, Option<Usage>), UpstreamError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| UpstreamError::new(ErrorKind::Malformed, format!("not an embed response: {e}")))?;
    let Some(vectors) = v.at("embeddings").at("float").as_array().or(v.at("embeddings").as_array()) else {
        return Err(UpstreamError::new(ErrorKind::Malformed, "the embed response has no float embeddings"));
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64 { Value::from(encode_f32(e)) } else { e.clone() };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens = v.at("meta").at("billed_units").at("input_tokens").as_u64().unwrap_or(0);
    let usage = Usage { prompt_tokens: tokens, total_tokens: tokens, ..Usage::default() };
    let out = json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    Ok((out.json_text(), Some(usage)))
}

/// A vector as OpenAI's `base64` encoding: little-endian f32s, base64.
fn encode_f32(v: &Value) -> String {
    let mut bytes = Vec::new();
    for x in v.as_array().into_iter().flatten() {
        bytes.extend_from_slice(&(x.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
    }
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |n: u32| char::from(ABC.get((n & 63) as usize).copied().unwrap_or(b'='));
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

/// Checks an answer and writes it in OpenAI's shape.
struct EmbedFinish {
    base64: bool,
}

impl Finish for EmbedFinish {
    fn finish(&self, target: &Target, provider: &ProviderConfig, text: String) -> Result<Completion, UpstreamError> {
        let (body, usage) = match provider.format {
            Format::Cohere => from_cohere(&text, &target.model, self.base64)?,
            _ => {
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| UpstreamError::new(ErrorKind::Malformed, format!("not an embeddings list: {e}")))?;
                if !v.at("data").is_array() {
                    return Err(UpstreamError::new(ErrorKind::Malformed, "the embeddings answer has no data"));
                }
                let tokens = v.at("usage").at("prompt_tokens").as_u64();
                (text, tokens.map(|t| Usage { prompt_tokens: t, total_tokens: t, ..Usage::default() }))
            }
        };
        Ok(Completion { body, model: target.model.clone(), usage, answer: Default::default() })
    }
}

pub async fn embeddings<C: Clock, U: Upstream, R: Rng, M>(
    gw: &Gateway,
    body: &[u8],
    log: &mut RequestLog,
    w: &mut World<'_, C, U, R, M>,
) -> Reply {
    let req = match EmbedRequest::parse(body) {
        Ok(r) => r,
        Err(e) => return client_error(e, log),
    };
    let route = match find_route(gw, req.model(), log) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let now = w.clock.now_ms();
    let embedders: Vec<usize> =
        (0..route.targets.len()).filter(|&i| route.targets.get(i).is_some_and(|t| t.caps.embeddings)).collect();
    if embedders.is_empty() {
        let e = ApiError::invalid_param(
            "model",
            format!("route `{}` has no embedding target (a target with the `embeddings` capability)", route.name),
        )
        .with_code("unsupported_capability");
        return client_error(e, log);
    }
    let provider = |i: usize| route.targets.get(i).map_or(usize::MAX, |t| t.provider);
    let (order, forced) = {
        let states = gw.states();
        crate::selection::keep_available(
            embedders,
            |i| states.availability(provider(i), now),
            |i| states.record(provider(i)).last_failure_ms,
            gw.config.when_all_unavailable,
        )
    };
    // One embedding space: the first target's.
    let space = order.first().and_then(|&i| route.targets.get(i)).map(|t| t.embedding_space.clone());
    let order: Vec<usize> =
        order.into_iter().filter(|&i| route.targets.get(i).map(|t| &t.embedding_space) == space.as_ref()).collect();
    let finish = EmbedFinish { base64: req.base64 };
    serve_whole(gw, Targets { route, order: &order, forced }, &req, &finish, log, w).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/embeddings/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn requests_read_every_input_shape() {
        let r = EmbedRequest::parse(fixture("openai_request_base64_dimensions.json").as_bytes()).unwrap();
        assert!(r.base64);
        assert_eq!(r.dimensions, Some(8));
        assert!(matches!(r.input, Input::Texts(ref t) if t.len() == 2));
        let r = EmbedRequest::parse(br#"{"model":"e","input":"one"}"#).unwrap();
        assert_eq!(r.input, Input::Texts(vec!["one".into()]));
        let r = EmbedRequest::parse(br#"{"model":"e","input":[[1,2],[3]]}"#).unwrap();
        assert!(matches!(r.input, Input::Tokens(_)));
        for bad in [
            &br#"{"model":"e","input":[]}"#[..],
            br#"{"model":"e","input":5}"#,
            br#"{"model":"e","input":"x","encoding_format":"hex"}"#,
            br#"{"model":"e","input":"x","dimensions":0}"#,
            br#"{"input":"x"}"#,
        ] {
            assert_eq!(EmbedRequest::parse(bad).unwrap_err().status, 400);
        }
    }

    #[test]
    fn cohere_answers_become_openai_lists_in_float_or_base64() {
        let (body, usage) = from_cohere(&fixture("cohere_embed_response.json"), "embed-v4.0", false).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 1024);
        assert_eq!(usage.unwrap().prompt_tokens, 2);
        let (body, _) = from_cohere(&fixture("cohere_embed_response.json"), "embed-v4.0", true).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        let b64 = v["data"][0]["embedding"].as_str().unwrap();
        // 1,024 little-endian f32s, base64: the length of 4,096 bytes, and
        // the first three floats (12 bytes) as their own 16 characters.
        assert_eq!(b64.len(), 4096usize.div_ceil(3) * 4);
        let src: Value = serde_json::from_str(&fixture("cohere_embed_response.json")).unwrap();
        let first3 = json!(src["embeddings"]["float"][0].as_array().unwrap()[..3].to_vec());
        assert_eq!(&b64[..16], encode_f32(&first3));
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(encode_f32(&json!([1.0])), "AACAPw==");
    }

    #[test]
    fn cohere_gets_texts_and_a_default_input_type() {
        let cfg = crate::config::Config::from_json(
            r#"{"providers":{"c":{"format":"cohere","base_url":"http://127.0.0.1:3","key_secret":"K"}},
              "routes":{"e":{"targets":[{"provider":"c","model":"embed-v4.0","capabilities":["embeddings"]}]}}}"#,
        )
        .unwrap();
        let p = &cfg.providers[0];
        let r = EmbedRequest::parse(br#"{"model":"e","input":["a","b"],"dimensions":256}"#).unwrap();
        let up = r.build(&Outbound { provider: p, model: "embed-v4.0", api_key: Some("k") }).unwrap();
        assert_eq!(up.url, "http://127.0.0.1:3/v2/embed");
        let body: Value = serde_json::from_str(up.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["texts"], json!(["a", "b"]));
        assert_eq!(body["input_type"], "search_document");
        assert_eq!(body["output_dimension"], 256);
        let tokens = EmbedRequest::parse(br#"{"model":"e","input":[[1,2]]}"#).unwrap();
        assert!(tokens.build(&Outbound { provider: p, model: "m", api_key: None }).is_err());
    }
}
