//! The client-facing API: OpenAI Chat Completions request and response types,
//! request validation, and OpenAI-shaped error bodies.
//!
//! Whatever provider serves a request, the client speaks and hears this format.
//! Unknown top-level request fields are kept (`extra`) so that OpenAI-compatible
//! upstreams receive them unchanged.

use crate::json::JsonText as _;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// A client error or a gateway error, rendered in OpenAI's error shape:
/// `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Extra structured detail (for example the list of attempts); rendered
    /// under `error.attempts` when present.
    pub attempts: Option<Value>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into(), param: None, code: None, attempts: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::invalid(message);
        e.param = Some(param.into());
        e
    }
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "invalid_request_error", message)
    }
    pub fn to_json(&self) -> String {
        let mut err = Map::new();
        err.insert("message".into(), Value::String(self.message.clone()));
        err.insert("type".into(), Value::String(self.kind.into()));
        err.insert("param".into(), self.param.clone().map(Value::String).unwrap_or(Value::Null));
        err.insert("code".into(), self.code.clone().map(Value::String).unwrap_or(Value::Null));
        if let Some(a) = &self.attempts {
            err.insert("attempts".into(), a.clone());
        }
        let mut top = Map::new();
        top.insert("error".into(), Value::Object(err));
        Value::Object(top).json_text()
    }
}

// ---------------------------------------------------------------- request

/// Serialised (by [`Outgoing`]) for OpenAI-compatible upstreams, which take
/// the target's `model` and their own `stream_options`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatRequest {
    #[serde(skip_serializing)]
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Gateway options (never forwarded upstream).
    #[serde(default, rename = "switchyard", skip_serializing)]
    pub gateway: Option<GatewayOptions>,
    /// Every other field, forwarded unchanged to OpenAI-compatible upstreams.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// What the client sent in another API's shape (Anthropic Messages,
    /// OpenAI Responses): a target that speaks it gets it as it was.
    #[serde(skip)]
    pub native: Option<Box<Native>>,
}

/// A request as an OpenAI-compatible target gets it: the client's fields,
/// borrowed rather than copied, with the target's model and stream options.
#[derive(Serialize)]
pub struct Outgoing<'a> {
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub request: &'a ChatRequest,
}

/// The inbound APIs whose requests can reach a target of the same format
/// unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeApi {
    /// Anthropic Messages (`/v1/messages`).
    Messages,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
}

/// A request as the client sent it in its own API's shape, beside the
/// gateway's translation of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Native {
    pub api: Option<NativeApi>,
    /// The body as sent (its `model` is replaced for the target).
    pub body: Map<String, Value>,
    /// Headers to pass on to a target of the same API (`anthropic-version`,
    /// `anthropic-beta`).
    pub headers: Vec<(String, String)>,
    /// Responses: tools of a `namespace`, flattened for targets without
    /// namespaces: (flat name, namespace, name).
    pub namespaced_tools: Vec<(String, String, String)>,
    /// Responses: hosted tools left out for a target that cannot run them.
    pub hosted_tools: Vec<String>,
}

// `Deserialize` for ChatRequest and Message is written out rather than
// derived: a derived `#[serde(flatten)]` buffers the whole object into an
// intermediate tree and deserializes every field type a second time from it,
// which cost CPU on every request and doubled their code in the bundle.
// These read the object in one pass and keep unknown fields in `extra`.

const REQUEST_FIELDS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "stream",
    "stream_options",
    "n",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "switchyard",
];
const MESSAGE_FIELDS: &[&str] = &["role", "content", "name", "tool_calls", "tool_call_id"];

/// A known field given twice is an error (as a derived `Deserialize` has it).
fn first_time<E: de::Error>(seen: &mut u32, fields: &'static [&'static str], key: &str) -> Result<(), E> {
    if let Some(i) = fields.iter().position(|f| *f == key) {
        if *seen & (1 << i) != 0 {
            return Err(E::duplicate_field(fields.get(i).copied().unwrap_or("")));
        }
        *seen |= 1 << i;
    }
    Ok(())
}

impl<'de> Deserialize<'de> for ChatRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChatRequest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chat completion request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatRequest, A::Error> {
                let mut r = ChatRequest::default();
                let (mut model, mut messages) = (false, false);
                let mut seen = 0u32;
                while let Some(key) = map.next_key::<String>()? {
                    first_time(&mut seen, REQUEST_FIELDS, &key)?;
                    match key.as_str() {
                        "model" => (r.model, model) = (map.next_value()?, true),
                        "messages" => (r.messages, messages) = (map.next_value()?, true),
                        "temperature" => r.temperature = map.next_value()?,
                        "top_p" => r.top_p = map.next_value()?,
                        "max_tokens" => r.max_tokens = map.next_value()?,
                        "max_completion_tokens" => r.max_completion_tokens = map.next_value()?,
                        "stop" => r.stop = map.next_value()?,
                        "parallel_tool_calls" => r.parallel_tool_calls = map.next_value()?,
                        "user" => r.user = map.next_value()?,
                        "stream" => r.stream = map.next_value()?,
                        "stream_options" => r.stream_options = map.next_value()?,
                        "n" => r.n = map.next_value()?,
                        "seed" => r.seed = map.next_value()?,
                        "frequency_penalty" => r.frequency_penalty = map.next_value()?,
                        "presence_penalty" => r.presence_penalty = map.next_value()?,
                        _ => {
                            let v = map.next_value::<Value>()?;
                            r.extra.insert(key, v);
                        }
                    }
                }
                if !model {
                    return Err(de::Error::missing_field("model"));
                }
                if !messages {
                    return Err(de::Error::missing_field("messages"));
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

/// Per-request gateway options, in the request body under `switchyard`.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// The client's own fallback order: target ids (`provider` or
    /// `provider/model`) among the route's configured targets.
    pub order: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(role_name(*self))
    }
}

/// The roles in the order of [`ROLE_NAMES`] (a test holds them to
/// [`role_name`]).
const ROLES: [Role; 6] = [Role::System, Role::Developer, Role::User, Role::Assistant, Role::Tool, Role::Function];
const ROLE_NAMES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let i = de::DeserializeSeed::deserialize(OneOf { names: ROLE_NAMES, what: "a message role" }, d)?;
        Ok(ROLES.get(i).copied().unwrap_or(Role::User))
    }
}

/// Reads a string that must be one of `names`, as its index there (an
/// unknown one is serde's "unknown variant" error, listing the names).
struct OneOf {
    names: &'static [&'static str],
    what: &'static str,
}

impl<'de> de::DeserializeSeed<'de> for OneOf {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for OneOf {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.what)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        self.names.iter().position(|n| *n == v).ok_or_else(|| E::unknown_variant(v, self.names))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Message;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
                let mut role = None;
                let mut m = Message {
                    role: Role::User,
                    content: None,
                    name: None,
                    tool_calls: None,
                    tool_call_id: None,
                    extra: Map::new(),
                };
                let mut seen = 0u32;
                while let Some(key) = map.next_key::<String>()? {
                    first_time(&mut seen, MESSAGE_FIELDS, &key)?;
                    match key.as_str() {
                        "role" => role = Some(map.next_value()?),
                        "content" => m.content = map.next_value()?,
                        "name" => m.name = map.next_value()?,
                        "tool_call_id" => m.tool_call_id = map.next_value()?,
                        _ => {
                            let v = map.next_value::<Value>()?;
                            m.extra.insert(key, v);
                        }
                    }
                }
                m.role = role.ok_or_else(|| de::Error::missing_field("role"))?;
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

/// Message content: a plain string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content: the string, or the text parts joined.
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    if let ContentPart::Text { text } = p {
                        out.push_str(text);
                    }
                }
                out
            }
        }
    }
    pub fn has_image(&self) -> bool {
        matches!(self, Content::Parts(p) if p.iter().any(|p| matches!(p, ContentPart::ImageUrl { .. })))
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<ContentPart>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ContentPart {
    #[serde(rename = "text")]
    Text { text: String },
    #[serde(rename = "image_url")]
    ImageUrl { image_url: ImageUrl },
    #[serde(rename = "input_audio")]
    InputAudio { input_audio: Value },
    #[serde(rename = "file")]
    File { file: Value },
}

// Read from the part's object by its `type`, rather than derived: a derived
// internally tagged enum buffers the object into an intermediate tree and
// reads each variant from it, code for every variant's fields twice over.
impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const KINDS: &[&str] = &["text", "image_url", "input_audio", "file"];
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContentPart;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a content part object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentPart, A::Error> {
                // The `type` is checked where it stands (so an error points
                // at it); the fields are kept until the object ends.
                let mut kind = None;
                let mut fields: Vec<(String, Value)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "type" {
                        kind = Some(map.next_value_seed(OneOf { names: KINDS, what: "a content part type" })?);
                    } else if KINDS.contains(&key.as_str()) {
                        fields.push((key, map.next_value()?));
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
                let name = KINDS.get(kind).copied().unwrap_or_default();
                let value = fields
                    .into_iter()
                    .find_map(|(k, v)| (k == name).then_some(v))
                    .ok_or_else(|| de::Error::missing_field(name))?;
                let wrong = |what: &str| de::Error::custom(format!("invalid `{name}` in a content part: {what}"));
                match (kind, value) {
                    (0, Value::String(text)) => Ok(ContentPart::Text { text }),
                    (0, _) => Err(wrong("expected a string")),
                    (1, Value::Object(mut o)) => match (o.shift_remove("url"), o.shift_remove("detail")) {
                        (Some(Value::String(url)), None | Some(Value::Null)) => {
                            Ok(ContentPart::ImageUrl { image_url: ImageUrl { url, detail: None } })
                        }
                        (Some(Value::String(url)), Some(Value::String(detail))) => {
                            Ok(ContentPart::ImageUrl { image_url: ImageUrl { url, detail: Some(detail) } })
                        }
                        (None, _) => Err(wrong("missing field `url`")),
                        _ => Err(wrong("`url` and `detail` must be strings")),
                    },
                    (1, _) => Err(wrong("expected an object")),
                    (2, input_audio) => Ok(ContentPart::InputAudio { input_audio }),
                    (_, file) => Ok(ContentPart::File { file }),
                }
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(ToolChoiceMode),
    /// `{"type":"function","function":{"name":...}}`
    Named {
        #[serde(rename = "type")]
        kind: String,
        function: NamedFunction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    None,
    Auto,
    Required,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v {
            Value::String(s) => Ok(Stop::One(s)),
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    _ => Err(de::Error::custom("stop must be a string or an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Stop::Many),
            _ => Err(de::Error::custom("stop must be a string or an array of strings")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: ResponseFormatKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormatKind {
    Text,
    JsonObject,
    JsonSchema,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// Read as an object with `include_usage` taken out, rather than with a
// derived `#[serde(flatten)]` (an intermediate tree, and its code).
impl<'de> Deserialize<'de> for StreamOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut o = StreamOptions { include_usage: None, extra: Map::new() };
        for (k, v) in Map::<String, Value>::deserialize(d)? {
            match (k.as_str(), v) {
                ("include_usage", Value::Null) => {}
                ("include_usage", v) => o.include_usage = Some(bool::deserialize(v).map_err(de::Error::custom)?),
                (_, v) => {
                    o.extra.insert(k, v);
                }
            }
        }
        Ok(o)
    }
}

impl ChatRequest {
    /// Parses and validates a request body. Errors name the offending field.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        // Read as text first: every JSON read in the gateway goes through the
        // one `&str` deserializer, so its code is in the bundle once.
        let Ok(text) = std::str::from_utf8(body) else {
            return Err(ApiError::invalid("the request body is not valid UTF-8 JSON"));
        };
        let mut req: ChatRequest = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return Err(ApiError::invalid(format!("the request body is not a valid chat completion request: {e}")));
            }
            Err(e) => match crate::json_path::error_path(body, &e) {
                Some(path) => {
                    let message = format!("invalid value for `{path}`: {}", crate::json_path::message_of(&e));
                    return Err(ApiError::invalid_param(path, message));
                }
                None => {
                    return Err(ApiError::invalid(format!(
                        "the request body is not a valid chat completion request: {e}"
                    )))
                }
            },
        };
        req.read_trees()?;
        req.validate()?;
        Ok(req)
    }

    /// Reads the fields the one-pass reader left in `extra` as JSON trees:
    /// tools, tool choice, response format, gateway options and the
    /// messages' tool calls. Their shapes are read here by hand, which
    /// costs less bundle than a derived reader per type, and a mistake is
    /// named by its full path (`tools[2].function.name`).
    fn read_trees(&mut self) -> Result<(), ApiError> {
        if let Some(v) = take(&mut self.extra, "tools") {
            self.tools = Some(list(v, "tools", read_tool)?);
        }
        if let Some(v) = take(&mut self.extra, "tool_choice") {
            self.tool_choice = Some(read_tool_choice(v)?);
        }
        if let Some(v) = take(&mut self.extra, "response_format") {
            self.response_format = Some(read_response_format(v)?);
        }
        if let Some(v) = take(&mut self.extra, "switchyard") {
            let mut o = into_object(v, "switchyard")?;
            if let Some(k) = o.keys().find(|k| *k != "order") {
                return Err(bad(&format!("switchyard.{k}"), &format!("unknown field `{k}`, expected `order`")));
            }
            let order = match take(&mut o, "order") {
                Some(v) => Some(list(v, "switchyard.order", |v, at| into_string(v, &at))?),
                None => None,
            };
            self.gateway = Some(GatewayOptions { order });
        }
        for (i, m) in self.messages.iter_mut().enumerate() {
            if let Some(v) = take(&mut m.extra, "tool_calls") {
                m.tool_calls = Some(list(v, &format!("messages[{i}].tool_calls"), read_tool_call)?);
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ApiError> {
        if self.model.trim().is_empty() {
            return Err(ApiError::invalid_param("model", "`model` must name a route or model"));
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid_param("messages", "`messages` must hold at least one message"));
        }
        range("temperature", self.temperature, 0.0, 2.0)?;
        range("top_p", self.top_p, 0.0, 1.0)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        for (name, v) in [("max_tokens", self.max_tokens), ("max_completion_tokens", self.max_completion_tokens)] {
            if v == Some(0) {
                return Err(ApiError::invalid_param(name, format!("`{name}` must be at least 1")));
            }
        }
        if let Some(n) = self.n {
            if !(1..=128).contains(&n) {
                return Err(ApiError::invalid_param("n", "`n` must be between 1 and 128"));
            }
        }
        if let Some(e) = self.extra.get("reasoning_effort") {
            if !(e.is_string() || e.is_null()) {
                return Err(ApiError::invalid_param("reasoning_effort", "`reasoning_effort` must be a string"));
            }
        }
        if let Some(Stop::Many(v)) = &self.stop {
            if v.len() > 4 {
                return Err(ApiError::invalid_param("stop", "`stop` holds at most 4 sequences"));
            }
        }
        if let Some(tools) = &self.tools {
            for (i, t) in tools.iter().enumerate() {
                if t.kind != "function" {
                    return Err(ApiError::invalid_param(
                        format!("tools[{i}].type"),
                        format!("unsupported tool type `{}`: only `function` tools are supported", t.kind),
                    ));
                }
                if t.function.name.is_empty() {
                    return Err(ApiError::invalid_param(format!("tools[{i}].function.name"), "a tool needs a name"));
                }
            }
        }
        for (i, m) in self.messages.iter().enumerate() {
            match m.role {
                Role::Tool if m.tool_call_id.is_none() => {
                    return Err(ApiError::invalid_param(
                        format!("messages[{i}].tool_call_id"),
                        "a `tool` message needs `tool_call_id`",
                    ))
                }
                Role::Assistant if m.content.is_none() && m.tool_calls.is_none() => {
                    return Err(ApiError::invalid_param(
                        format!("messages[{i}].content"),
                        "an `assistant` message needs `content` or `tool_calls`",
                    ))
                }
                Role::System | Role::Developer | Role::User if m.content.is_none() => {
                    return Err(ApiError::invalid_param(
                        format!("messages[{i}].content"),
                        format!("a `{}` message needs `content`", role_name(m.role)),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The requested output limit (`max_completion_tokens` wins over the deprecated `max_tokens`).
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
    pub fn has_images(&self) -> bool {
        self.messages.iter().any(|m| m.content.as_ref().is_some_and(Content::has_image))
    }
    pub fn uses_tools(&self) -> bool {
        self.tools.as_ref().is_some_and(|t| !t.is_empty())
            || self.messages.iter().any(|m| m.role == Role::Tool || m.tool_calls.is_some())
    }
    /// `logprobs: true` or `top_logprobs` (kept in `extra`).
    pub fn wants_logprobs(&self) -> bool {
        self.extra.get("logprobs").is_some_and(|v| v.as_bool() == Some(true))
            || self.extra.get("top_logprobs").is_some_and(|v| !v.is_null())
    }
    /// `reasoning_effort` (kept in `extra`), unless it asks for none.
    pub fn reasoning_effort(&self) -> Option<&str> {
        self.extra.get("reasoning_effort").and_then(Value::as_str).filter(|e| *e != "none")
    }
    /// `parallel_tool_calls: false` with tools to call.
    pub fn forbids_parallel_tools(&self) -> bool {
        self.parallel_tool_calls == Some(false) && self.tools.as_ref().is_some_and(|t| !t.is_empty())
    }
    /// Choices asked for (`n`, default 1).
    pub fn choices(&self) -> u32 {
        self.n.unwrap_or(1).max(1)
    }
    pub fn wants_json(&self) -> bool {
        self.response_format.as_ref().is_some_and(|f| f.kind != ResponseFormatKind::Text)
    }
    /// A rough prompt size in tokens (4 characters a token, counting
    /// characters, not bytes: CJK text would be overestimated threefold),
    /// used to skip targets whose context window is plainly too small.
    pub fn estimated_prompt_tokens(&self) -> u64 {
        let chars: usize =
            self.messages.iter().map(|m| m.content.as_ref().map_or(0, |c| c.text().chars().count())).sum();
        (chars as u64) / 4
    }
}

// ------------------------------------------------- fields read from a tree

/// `key` taken out of `map`; `null` counts as absent. The fields left keep
/// the client's order (they are sent on as they came).
fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.shift_remove(key).filter(|v| !v.is_null())
}

/// A client mistake at `path`, worded as the one-pass reader words its own.
fn bad(path: &str, what: &str) -> ApiError {
    ApiError::invalid_param(path, format!("invalid value for `{path}`: {what}"))
}

fn into_object(v: Value, at: &str) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(bad(at, "expected an object")),
    }
}

fn into_string(v: Value, at: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(bad(at, "expected a string")),
    }
}

/// A string field that must be there.
fn required(o: &mut Map<String, Value>, at: &str, key: &str) -> Result<String, ApiError> {
    match take(o, key) {
        Some(v) => into_string(v, &format!("{at}.{key}")),
        None => Err(bad(at, &format!("missing field `{key}`"))),
    }
}

/// An object field that must be there, with its path.
fn member(o: &mut Map<String, Value>, at: &str, key: &str) -> Result<(Map<String, Value>, String), ApiError> {
    let path = format!("{at}.{key}");
    match take(o, key) {
        Some(v) => Ok((into_object(v, &path)?, path)),
        None => Err(bad(at, &format!("missing field `{key}`"))),
    }
}

/// A string field that may be left out.
fn optional(o: &mut Map<String, Value>, at: &str, key: &str) -> Result<Option<String>, ApiError> {
    take(o, key).map(|v| into_string(v, &format!("{at}.{key}"))).transpose()
}

/// A list whose elements `read` reads, each at `at[i]`.
fn list<T>(v: Value, at: &str, read: impl Fn(Value, String) -> Result<T, ApiError>) -> Result<Vec<T>, ApiError> {
    match v {
        Value::Array(items) => items.into_iter().enumerate().map(|(i, v)| read(v, format!("{at}[{i}]"))).collect(),
        _ => Err(bad(at, "expected a list")),
    }
}

fn read_tool(v: Value, at: String) -> Result<Tool, ApiError> {
    let mut o = into_object(v, &at)?;
    let kind = required(&mut o, &at, "type")?;
    let (mut f, f_at) = member(&mut o, &at, "function")?;
    let strict = match take(&mut f, "strict") {
        None => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => return Err(bad(&format!("{f_at}.strict"), "expected a boolean")),
    };
    let function = FunctionDef {
        name: required(&mut f, &f_at, "name")?,
        description: optional(&mut f, &f_at, "description")?,
        parameters: take(&mut f, "parameters"),
        strict,
    };
    Ok(Tool { kind, function })
}

fn read_tool_call(v: Value, at: String) -> Result<ToolCall, ApiError> {
    let mut o = into_object(v, &at)?;
    let id = required(&mut o, &at, "id")?;
    let kind = optional(&mut o, &at, "type")?.unwrap_or_else(|| "function".to_owned());
    let (mut f, f_at) = member(&mut o, &at, "function")?;
    let function =
        FunctionCall { name: required(&mut f, &f_at, "name")?, arguments: required(&mut f, &f_at, "arguments")? };
    Ok(ToolCall { id, kind, function })
}

fn read_tool_choice(v: Value) -> Result<ToolChoice, ApiError> {
    match v {
        Value::String(s) => match s.as_str() {
            "none" => Ok(ToolChoice::Mode(ToolChoiceMode::None)),
            "auto" => Ok(ToolChoice::Mode(ToolChoiceMode::Auto)),
            "required" => Ok(ToolChoice::Mode(ToolChoiceMode::Required)),
            other => Err(bad(
                "tool_choice",
                &format!("unknown tool_choice `{other}`, expected none, auto, required or an object naming a function"),
            )),
        },
        Value::Object(mut o) => {
            let kind = required(&mut o, "tool_choice", "type")?;
            let (mut f, f_at) = member(&mut o, "tool_choice", "function")?;
            Ok(ToolChoice::Named { kind, function: NamedFunction { name: required(&mut f, &f_at, "name")? } })
        }
        _ => Err(bad("tool_choice", "tool_choice must be a string or an object")),
    }
}

fn read_response_format(v: Value) -> Result<ResponseFormat, ApiError> {
    let at = "response_format";
    let mut o = into_object(v, at)?;
    let kind = match required(&mut o, at, "type")?.as_str() {
        "text" => ResponseFormatKind::Text,
        "json_object" => ResponseFormatKind::JsonObject,
        "json_schema" => ResponseFormatKind::JsonSchema,
        other => {
            return Err(bad(
                "response_format.type",
                &format!("unknown variant `{other}`, expected one of `text`, `json_object`, `json_schema`"),
            ))
        }
    };
    Ok(ResponseFormat { kind, json_schema: take(&mut o, "json_schema") })
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
        Role::Function => "function",
    }
}

fn range(name: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<(), ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => {
            Err(ApiError::invalid_param(name, format!("`{name}` must be between {lo} and {hi}, got {x}")))
        }
        _ => Ok(()),
    }
}

/// serde_json appends " at line L column C"; the path already says where.

// ---------------------------------------------------------------- response

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: ResponseMessage,
    pub finish_reason: Option<String>,
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseMessage {
    pub role: String,
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Reasoning (thinking) text, where the provider returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// Token counts, in OpenAI's shape. Read leniently (every field optional,
/// counts as integers or floats, `null` details), since answers from
/// compatible hosts vary and a good answer must never fail on its usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Reads an OpenAI `usage` object, every part optional: a count that is
    /// missing or not one is 0, a missing `total_tokens` the sum.
    pub fn read(u: &Value) -> Usage {
        use crate::json::Dig;
        let (p, c) = (u.at("prompt_tokens").count().unwrap_or(0), u.at("completion_tokens").count().unwrap_or(0));
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: u.at("total_tokens").count().unwrap_or(p.saturating_add(c)),
            prompt_tokens_details: u
                .at("prompt_tokens_details")
                .at("cached_tokens")
                .count()
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
            completion_tokens_details: u
                .at("completion_tokens_details")
                .at("reasoning_tokens")
                .count()
                .map(|reasoning_tokens| CompletionTokensDetails { reasoning_tokens }),
        }
    }
}

/// What the gateway reads from an OpenAI-format `chat.completion` it passes
/// on: read leniently, from choice 0 (content as a string or as text parts,
/// any field missing, extra fields ignored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionView {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub text: String,
    pub reasoning: Option<String>,
    /// `(id, name, arguments)` of choice 0's tool calls.
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub choices: usize,
}

/// Why a 2xx body is not an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum NotAnAnswer {
    /// Not a JSON object.
    Unreadable(String),
    /// An `{"error": ...}` object (some hosts answer 200 with one).
    Error(Value),
    /// No choices.
    NoChoices,
}

impl CompletionView {
    pub fn parse(body: &str) -> Option<CompletionView> {
        Self::read(body).ok()
    }

    pub fn read(body: &str) -> Result<CompletionView, NotAnAnswer> {
        use crate::json::Dig;
        let v: Value = serde_json::from_str(body).map_err(|e| NotAnAnswer::Unreadable(e.to_string()))?;
        if !v.is_object() {
            return Err(NotAnAnswer::Unreadable("the body is not a JSON object".to_owned()));
        }
        if !v.at("error").is_null() && v.get("choices").is_none() {
            return Err(NotAnAnswer::Error(v));
        }
        let choices = v.at("choices").as_array().map_or(0, Vec::len);
        if choices == 0 {
            return Err(NotAnAnswer::NoChoices);
        }
        let choice = v.at("choices").nth(0);
        let m = choice.at("message");
        let text = match m.at("content") {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p.at("text").as_str()).collect(),
            _ => String::new(),
        };
        let reasoning = m.at("reasoning_content").as_str().or(m.at("reasoning").as_str()).map(str::to_owned);
        let tool_calls = m
            .at("tool_calls")
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| {
                        let f = c.at("function");
                        let args = match f.at("arguments") {
                            Value::String(s) => s.clone(),
                            Value::Null => "{}".to_owned(),
                            other => other.json_text(),
                        };
                        (
                            c.at("id").as_str().unwrap_or_default().to_owned(),
                            f.at("name").as_str().unwrap_or_default().to_owned(),
                            args,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(CompletionView {
            id: v.at("id").as_str().unwrap_or_default().to_owned(),
            created: v.at("created").count().unwrap_or(0),
            model: v.at("model").as_str().unwrap_or_default().to_owned(),
            text,
            reasoning,
            tool_calls,
            finish_reason: choice.at("finish_reason").as_str().map(str::to_owned),
            usage: v.get("usage").filter(|u| u.is_object()).map(Usage::read),
            choices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_token_counts_saturate_rather_than_overflow() {
        let u = Usage::read(&serde_json::from_str(r#"{"prompt_tokens":1e300,"completion_tokens":5}"#).unwrap());
        assert_eq!(u.total_tokens, u64::MAX);
    }

    #[test]
    fn role_names_read_back_as_their_roles() {
        assert_eq!(ROLES.len(), ROLE_NAMES.len());
        for (r, name) in ROLES.iter().zip(ROLE_NAMES) {
            assert_eq!(role_name(*r), *name);
            let m: Message = serde_json::from_str(&format!(r#"{{"role":"{name}","content":"x"}}"#)).unwrap();
            assert_eq!(m.role, *r);
        }
    }

    #[test]
    fn stream_options_keep_unknown_fields_and_want_a_boolean_include_usage() {
        let o: StreamOptions = serde_json::from_str(r#"{"include_usage":true,"continuous_usage_stats":1}"#).unwrap();
        assert_eq!(o.include_usage, Some(true));
        assert_eq!(o.extra.get("continuous_usage_stats"), Some(&Value::from(1)));
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"include_usage":true,"continuous_usage_stats":1}"#);
        let o: StreamOptions = serde_json::from_str(r#"{"include_usage":null}"#).unwrap();
        assert_eq!((o.include_usage, o.extra.len()), (None, 0));
        let e = serde_json::from_str::<StreamOptions>(r#"{"include_usage":"yes"}"#).unwrap_err();
        assert!(e.to_string().contains("expected a boolean"), "{e}");
        assert!(serde_json::from_str::<StreamOptions>("[true]").is_err());
    }

    #[test]
    fn parses_the_openai_fixture_request() {
        let body = include_bytes!("../tests/fixtures/openai/chat_request.json");
        let r = ChatRequest::parse(body).unwrap();
        assert_eq!(r.model, "gpt-4o-mini");
        assert!(r.has_images());
        assert!(r.uses_tools());
        assert_eq!(r.max_output_tokens(), Some(300));
        assert_eq!(r.stop, Some(Stop::Many(vec!["\n\nUser:".into()])));
        assert_eq!(r.tool_choice, Some(ToolChoice::Mode(ToolChoiceMode::Auto)));
    }

    #[test]
    fn content_parts_are_read_by_type_and_written_back_the_same() {
        let text = r#"[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}},
            {"image_url":{"url":"https://x/y.png","detail":"low"},"type":"image_url"},
            {"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}},
            {"type":"file","file":{"file_id":"f-1"}}]"#;
        let parts: Vec<ContentPart> = serde_json::from_str(text).unwrap();
        assert_eq!(parts.first(), Some(&ContentPart::Text { text: "hi".into() }));
        let image = ImageUrl { url: "https://x/y.png".into(), detail: Some("low".into()) };
        assert_eq!(parts.get(1), Some(&ContentPart::ImageUrl { image_url: image }));
        let back: Value = serde_json::to_value(&parts).unwrap();
        assert_eq!(back[2]["input_audio"]["format"], "wav");
        assert_eq!(back[3], serde_json::json!({"type":"file","file":{"file_id":"f-1"}}));
        assert_eq!(back[0], serde_json::json!({"type":"text","text":"hi"}));
        for bad in [
            r#"{"text":"no type"}"#,
            r#"{"type":"text"}"#,
            r#"{"type":"text","text":5}"#,
            r#"{"type":"image_url","image_url":{"detail":"low"}}"#,
            r#"{"type":"video","video":{}}"#,
            r#"{"type":7,"text":"x"}"#,
        ] {
            assert!(serde_json::from_str::<ContentPart>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#)
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        assert!(e.message.contains("wizard"), "{}", e.message);
        let e = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":[{"type":"video"}]}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
        let e = ChatRequest::parse(br#"{"model":"m","messages":[],"temperature":1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e =
            ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":7}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("top_p"));
        let e = ChatRequest::parse(br#"{"model":"m","model":"n","messages":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        assert!(e.message.contains("duplicate field"), "{}", e.message);
        let e = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","role":"tool","content":"x"}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = ChatRequest::parse(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
        assert!(e.message.contains("missing field `model`"), "{}", e.message);
        let e = ChatRequest::parse(b"{\"model\":\"\xff\"}").unwrap_err();
        assert_eq!((e.status, e.param.is_none()), (400, true));
        let e = ChatRequest::parse(b"{\"model\":").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.param.is_none());
    }

    #[test]
    fn tools_tool_calls_choice_and_format_are_read_with_their_paths() {
        let body = serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null,
                 "tool_calls": [{"id": "c1", "function": {"name": "get", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get", "description": "d",
                       "parameters": {"type": "object"}, "strict": true, "x-extra": 1}}],
            "tool_choice": {"type": "function", "function": {"name": "get"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "s"}},
            "switchyard": {"order": ["a"]},
            "user": "u"
        });
        let r = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        assert!(r.extra.is_empty() && r.messages.iter().all(|m| m.extra.is_empty()), "{:?}", r.extra);
        let call = &r.messages[1].tool_calls.as_ref().unwrap()[0];
        assert_eq!((call.id.as_str(), call.kind.as_str(), call.function.name.as_str()), ("c1", "function", "get"));
        let tool = &r.tools.as_ref().unwrap()[0];
        assert_eq!(tool.function.parameters, Some(serde_json::json!({"type": "object"})));
        assert_eq!((tool.function.strict, tool.function.description.as_deref()), (Some(true), Some("d")));
        assert!(matches!(&r.tool_choice, Some(ToolChoice::Named { function, .. }) if function.name == "get"));
        assert_eq!(r.response_format.as_ref().map(|f| f.kind), Some(ResponseFormatKind::JsonSchema));
        // Written back for an OpenAI upstream as it came, less the gateway's own options.
        let out: Value = serde_json::to_value(&r).unwrap();
        assert_eq!(out["tools"][0]["function"]["name"], "get");
        assert_eq!(out["messages"][1]["tool_calls"][0]["type"], "function");
        assert_eq!(out["tool_choice"], body["tool_choice"]);
        assert_eq!(out["response_format"], body["response_format"]);
        assert!(out.get("switchyard").is_none());

        let base = r#""model":"m","messages":[{"role":"user","content":"x"}]"#;
        for (extra, param, says) in [
            (r#""tools":{}"#, "tools", "expected a list"),
            (r#""tools":[{"type":"function"}]"#, "tools[0]", "missing field `function`"),
            (
                r#""tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":3}}]"#,
                "tools[1].function.name",
                "expected a string",
            ),
            (
                r#""tools":[{"type":"function","function":{"name":"a","strict":"yes"}}]"#,
                "tools[0].function.strict",
                "boolean",
            ),
            (r#""tool_choice":"sometimes""#, "tool_choice", "unknown tool_choice `sometimes`"),
            (r#""tool_choice":{"type":"function","function":{}}"#, "tool_choice.function", "missing field `name`"),
            (r#""tool_choice":3"#, "tool_choice", "a string or an object"),
            (r#""response_format":{"type":"yaml"}"#, "response_format.type", "unknown variant `yaml`"),
            (r#""response_format":{}"#, "response_format", "missing field `type`"),
            (r#""switchyard":{"ordr":[]}"#, "switchyard.ordr", "unknown field `ordr`"),
            (r#""switchyard":{"order":["a",1]}"#, "switchyard.order[1]", "expected a string"),
        ] {
            let e = ChatRequest::parse(format!("{{{base},{extra}}}").as_bytes()).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{extra}: {}", e.message);
            assert!(e.message.contains(says), "{extra}: {}", e.message);
        }
        let e = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f"}}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_calls[0].function"), "{}", e.message);
        assert!(e.message.contains("missing field `arguments`"), "{}", e.message);
        let e =
            ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[],"tools":[]}"#)
                .unwrap_err();
        assert!(e.message.contains("duplicate field `tools`"), "{}", e.message);
        let r = ChatRequest::parse(format!("{{{base},\"tools\":null,\"tool_choice\":null}}").as_bytes()).unwrap();
        assert!(r.tools.is_none() && r.tool_choice.is_none() && r.extra.is_empty());
    }

    #[test]
    fn unknown_fields_are_kept_and_gateway_options_are_not_forwarded() {
        let r = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true,"switchyard":{"order":["b","a"]}}"#,
        )
        .unwrap();
        assert_eq!(r.extra.get("logprobs"), Some(&Value::Bool(true)));
        assert_eq!(r.gateway.unwrap().order.unwrap(), vec!["b", "a"]);
        let r = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"switchyard":{}}"#)
            .unwrap();
        let out = serde_json::to_string(&r).unwrap();
        assert!(!out.contains("switchyard"), "{out}");
    }

    #[test]
    fn the_prompt_estimate_counts_characters_not_bytes() {
        let cjk = "日本語のテキスト".repeat(100); // 800 characters, 2,400 bytes
        let body = serde_json::json!({"model":"m","messages":[{"role":"user","content":cjk}]}).to_string();
        let r = ChatRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(r.estimated_prompt_tokens(), 200);
    }

    #[test]
    fn error_json_has_openai_shape() {
        let e = ApiError::invalid_param("messages", "bad").with_code("x");
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "x");
        assert_eq!(v["error"]["message"], "bad");
    }
}
