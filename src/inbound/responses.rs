//! OpenAI Responses (`POST /v1/responses`) as a client API: its requests
//! become the gateway's internal request (kept whole beside it, for
//! targets that serve Responses natively), and answers and stream events
//! are written back as a `response` object and Responses' event sequence.
//! Errors keep OpenAI's shape.
//!
//! Stateless by design: `previous_response_id`, `store: true` and
//! `conversation` need a target that keeps state (a native one); without
//! one they are refused with a 400 naming the field. Hosted tools
//! (`web_search`, `file_search`, ...) go to native targets as they are and
//! are left out for others (named in `x-switchyard-dropped-tools`), unless
//! the route says `hosted_tools = "reject"`. Tools of a `namespace` are
//! flattened to `<namespace>__<name>` for other targets and their calls
//! mapped back.

use crate::api::{
    ApiError, ChatCompletion, ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Message,
    NamedFunction, Native, NativeApi, ResponseFormat, ResponseFormatKind, Role, Tool, ToolCall, ToolChoice,
    ToolChoiceMode, Usage,
};
use crate::event::{Emit, Event};
use crate::json::{object, Dig, JsonText as _};
use crate::taxonomy::UpstreamError;
use serde_json::{Map, Value};

use super::messages::{content_of, message, model_of, number};

/// Fields that need state kept by the provider: only a native target can serve them.
pub const STATEFUL_FIELDS: [&str; 2] = ["previous_response_id", "conversation"];

/// How a namespaced tool is named for targets without namespaces.
pub fn flat_name(namespace: &str, name: &str) -> String {
    format!("{namespace}__{name}")
}

/// Reads a Responses request.
pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let v = super::read_object(body, "a Responses request")?;
    let mut req = ChatRequest { model: model_of(&v)?, ..ChatRequest::default() };
    if let Some(i) = v.get("instructions").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        req.messages.push(message(Role::System, Some(Content::Text(i.to_owned()))));
    }
    match v.get("input") {
        Some(Value::String(s)) => req.messages.push(message(Role::User, Some(Content::Text(s.clone())))),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(i, item, &mut req.messages)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(ApiError::invalid_param("input", "`input` must be a string or a list of items")),
    }
    if req.messages.iter().all(|m| m.role == Role::System) && !STATEFUL_FIELDS.iter().any(|f| v.get(*f).is_some()) {
        return Err(ApiError::invalid_param("input", "`input` must hold at least one item"));
    }
    req.temperature = number(&v, "temperature", 0.0, 2.0)?;
    req.top_p = number(&v, "top_p", 0.0, 1.0)?;
    match v.get("max_output_tokens") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {
            req.max_completion_tokens = n.as_u64().map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        }
        Some(_) => {
            return Err(ApiError::invalid_param("max_output_tokens", "`max_output_tokens` must be a positive integer"))
        }
    }
    req.stream = v.get("stream").and_then(Value::as_bool);
    req.parallel_tool_calls = v.get("parallel_tool_calls").and_then(Value::as_bool);
    req.user = v.get("user").or(v.get("safety_identifier")).and_then(Value::as_str).map(str::to_owned);
    if let Some(effort) = v.at("reasoning").at("effort").as_str() {
        req.extra.insert("reasoning_effort".into(), Value::from(effort));
    }
    if let Some(key) = v.get("prompt_cache_key").filter(|k| k.is_string()) {
        req.extra.insert("prompt_cache_key".into(), key.clone());
    }
    let format = v.at("text").at("format");
    match format.at("type").as_str() {
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "description", "schema", "strict"] {
                if let Some(x) = format.get(k) {
                    schema.insert(k.into(), x.clone());
                }
            }
            req.response_format =
                Some(ResponseFormat { kind: ResponseFormatKind::JsonSchema, json_schema: Some(Value::Object(schema)) });
        }
        Some("json_object") => {
            req.response_format = Some(ResponseFormat { kind: ResponseFormatKind::JsonObject, json_schema: None });
        }
        _ => {}
    }
    let mut native = Native { api: Some(NativeApi::Responses), ..Native::default() };
    if let Some(tools) = v.get("tools").and_then(Value::as_array) {
        let mut defs = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            match t.at("type").as_str() {
                Some("function") => defs.push(function_tool(&format!("tools[{i}]"), t, None)?),
                Some("namespace") => {
                    let ns = t.at("name").as_str().unwrap_or_default();
                    for (j, inner) in t.at("tools").as_array().into_iter().flatten().enumerate() {
                        let tool = function_tool(&format!("tools[{i}].tools[{j}]"), inner, Some(ns))?;
                        let name = inner.at("name").as_str().unwrap_or_default().to_owned();
                        native.namespaced_tools.push((tool.function.name.clone(), ns.to_owned(), name));
                        defs.push(tool);
                    }
                }
                Some(kind) => native.hosted_tools.push(kind.to_owned()),
                None => return Err(ApiError::invalid_param(format!("tools[{i}].type"), "a tool needs a `type`")),
            }
        }
        if !defs.is_empty() {
            req.tools = Some(defs);
        }
    }
    req.tool_choice = match v.get("tool_choice") {
        Some(Value::String(s)) => match s.as_str() {
            "none" => Some(ToolChoice::Mode(ToolChoiceMode::None)),
            "required" => Some(ToolChoice::Mode(ToolChoiceMode::Required)),
            _ => Some(ToolChoice::Mode(ToolChoiceMode::Auto)),
        },
        Some(c) if c.at("type").as_str() == Some("function") => {
            let name = c.at("name").as_str().unwrap_or_default();
            let name = match c.at("namespace").as_str() {
                Some(ns) => flat_name(ns, name),
                None => name.to_owned(),
            };
            Some(ToolChoice::Named { kind: "function".into(), function: NamedFunction { name } })
        }
        _ => None,
    };
    if req.tools.is_none() {
        req.tool_choice = None;
        req.parallel_tool_calls = None;
    }
    let Value::Object(body) = v else { return Err(ApiError::invalid("the request body must be a JSON object")) };
    native.body = body;
    req.native = Some(Box::new(native));
    Ok(req)
}

/// The stateful field a request uses, if any: it can only go to a native target.
pub fn stateful_field(native: &Native) -> Option<&'static str> {
    if native.body.get("store").and_then(Value::as_bool) == Some(true) {
        return Some("store");
    }
    STATEFUL_FIELDS.iter().copied().find(|f| native.body.get(*f).is_some_and(|v| !v.is_null()))
}

fn function_tool(at: &str, t: &Value, namespace: Option<&str>) -> Result<Tool, ApiError> {
    let Some(name) = t.at("name").as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::invalid_param(format!("{at}.name"), "a function tool needs a name"));
    };
    Ok(Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: namespace.map_or_else(|| name.to_owned(), |ns| flat_name(ns, name)),
            description: t.at("description").as_str().map(str::to_owned),
            parameters: t.get("parameters").filter(|p| !p.is_null()).cloned(),
            strict: t.at("strict").as_bool(),
        },
    })
}

fn input_item(i: usize, item: &Value, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let kind = item.at("type").as_str().unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.at("role").as_str() {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("system") => Role::System,
                Some("developer") => Role::Developer,
                _ => {
                    return Err(ApiError::invalid_param(
                        format!("input[{i}].role"),
                        "`role` must be user, assistant, system or developer",
                    ))
                }
            };
            let content = match item.get("content") {
                Some(Value::String(s)) => Some(Content::Text(s.clone())),
                Some(Value::Array(parts)) => {
                    let mut out_parts = Vec::new();
                    for (j, p) in parts.iter().enumerate() {
                        match p.at("type").as_str() {
                            Some("input_text" | "output_text" | "text") => {
                                if let Some(t) = p.at("text").as_str() {
                                    out_parts.push(ContentPart::Text { text: t.to_owned() });
                                }
                            }
                            Some("refusal") => {
                                if let Some(t) = p.at("refusal").as_str() {
                                    out_parts.push(ContentPart::Text { text: t.to_owned() });
                                }
                            }
                            Some("input_image") => match p.at("image_url").as_str() {
                                Some(url) => out_parts.push(ContentPart::ImageUrl {
                                    image_url: ImageUrl {
                                        url: url.to_owned(),
                                        detail: p.at("detail").as_str().map(str::to_owned),
                                    },
                                }),
                                None => {
                                    return Err(ApiError::invalid_param(
                                        format!("input[{i}].content[{j}]"),
                                        "an `input_image` needs an `image_url` (uploaded files are not supported)",
                                    ))
                                }
                            },
                            Some(other) => {
                                return Err(ApiError::invalid_param(
                                    format!("input[{i}].content[{j}].type"),
                                    format!("content of type `{other}` is not supported"),
                                ))
                            }
                            None => {}
                        }
                    }
                    content_of(out_parts)
                }
                _ => None,
            };
            let Some(content) = content else { return Ok(()) };
            out.push(message(role, Some(content)));
        }
        "function_call" => {
            let name = item.at("name").as_str().unwrap_or_default();
            let name = match item.at("namespace").as_str() {
                Some(ns) => flat_name(ns, name),
                None => name.to_owned(),
            };
            let call = ToolCall {
                id: item.at("call_id").as_str().unwrap_or_default().to_owned(),
                kind: "function".into(),
                function: FunctionCall { name, arguments: item.at("arguments").as_str().unwrap_or("{}").to_owned() },
            };
            // One assistant message holds the calls that follow its text.
            match out.last_mut() {
                Some(m) if m.role == Role::Assistant => m.tool_calls.get_or_insert_with(Vec::new).push(call),
                _ => {
                    let mut m = message(Role::Assistant, None);
                    m.tool_calls = Some(vec![call]);
                    out.push(m);
                }
            }
        }
        "function_call_output" => {
            let text = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    crate::text::join(&parts.iter().filter_map(|p| p.at("text").as_str()).collect::<Vec<_>>(), "\n")
                }
                Some(other) => other.json_text(),
                None => String::new(),
            };
            let mut m = message(Role::Tool, Some(Content::Text(text)));
            m.tool_call_id = Some(item.at("call_id").as_str().unwrap_or_default().to_owned());
            out.push(m);
        }
        "item_reference" => {
            return Err(ApiError::invalid_param(
                format!("input[{i}]"),
                "`item_reference` needs stored responses, which this gateway does not keep: send the item itself",
            ))
        }
        // Reasoning items (opaque to other providers) and hosted-tool items.
        _ => {}
    }
    Ok(())
}

// ------------------------------------------------------------ answers

/// Names in the client's terms: a flattened tool's namespace and name.
fn unflatten<'a>(tools: &'a [(String, String, String)], flat: &'a str) -> (Option<&'a str>, &'a str) {
    match tools.iter().find(|(f, _, _)| f == flat) {
        Some((_, ns, name)) => (Some(ns.as_str()), name.as_str()),
        None => (None, flat),
    }
}

fn call_item(id: &str, call_id: &str, name: &str, args: &str, tools: &[(String, String, String)]) -> Value {
    let (ns, name) = unflatten(tools, name);
    let mut item = object([
        ("id", id.into()),
        ("type", "function_call".into()),
        ("status", "completed".into()),
        ("call_id", call_id.into()),
        ("name", name.into()),
        ("arguments", args.into()),
    ]);
    if let (Some(ns), Value::Object(m)) = (ns, &mut item) {
        m.insert("namespace".into(), Value::from(ns));
    }
    item
}

/// An assistant `message` output item.
fn message_item(id: String, status: &str, content: Vec<Value>) -> Value {
    object([
        ("id", id.into()),
        ("type", "message".into()),
        ("status", status.into()),
        ("role", "assistant".into()),
        ("content", Value::Array(content)),
    ])
}

/// A `reasoning` output item.
fn reasoning_item(id: String, summary: Vec<Value>) -> Value {
    object([("id", id.into()), ("type", "reasoning".into()), ("summary", Value::Array(summary))])
}

/// A message's `output_text` content part.
fn text_part(text: &str) -> Value {
    object([("type", "output_text".into()), ("text", text.into()), ("annotations", Value::Array(Vec::new()))])
}

/// A reasoning item's `summary_text` part.
fn summary_part(text: &str) -> Value {
    object([("type", "summary_text".into()), ("text", text.into())])
}

fn usage_json(u: Option<&Usage>) -> Value {
    let Some(u) = u else { return Value::Null };
    let cached = u.prompt_tokens_details.as_ref().map_or(0, |d| d.cached_tokens);
    let reasoning = u.completion_tokens_details.as_ref().map_or(0, |d| d.reasoning_tokens);
    object([
        ("input_tokens", u.prompt_tokens.into()),
        ("input_tokens_details", object([("cached_tokens", cached.into()), ("cache_write_tokens", 0.into())])),
        ("output_tokens", u.completion_tokens.into()),
        ("output_tokens_details", object([("reasoning_tokens", reasoning.into())])),
        ("total_tokens", u.prompt_tokens.saturating_add(u.completion_tokens).into()),
    ])
}

/// The fields every `response` object carries, around its output.
fn response_object(id: &str, created: u64, model: &str, status: &str, output: Vec<Value>, usage: Value) -> Value {
    let incomplete = (status == "incomplete").then(|| object([("reason", "max_output_tokens".into())]));
    object([
        ("id", id.into()),
        ("object", "response".into()),
        ("created_at", created.into()),
        ("status", status.into()),
        ("error", Value::Null),
        ("incomplete_details", incomplete.unwrap_or(Value::Null)),
        ("model", model.into()),
        ("output", Value::Array(output)),
        ("parallel_tool_calls", true.into()),
        ("previous_response_id", Value::Null),
        ("store", false.into()),
        ("text", object([("format", object([("type", "text".into())]))])),
        ("tool_choice", "auto".into()),
        ("tools", Value::Array(Vec::new())),
        ("usage", usage),
        ("metadata", Value::Object(Map::new())),
    ])
}

fn response_id(id: &str) -> String {
    if id.starts_with("resp_") {
        id.to_owned()
    } else {
        let bare = id.strip_prefix("chatcmpl-").unwrap_or(id);
        format!("resp_{}", bare.strip_prefix("msg_").unwrap_or(bare))
    }
}

/// An OpenAI completion as a `response` object (choice 0).
pub fn render(c: &ChatCompletion, tools: &[(String, String, String)]) -> String {
    let id = response_id(&c.id);
    let suffix = id.strip_prefix("resp_").unwrap_or(&id);
    let choice = c.choices.first();
    let mut output = Vec::new();
    if let Some(m) = choice.map(|c| &c.message) {
        if let Some(r) = m.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
            output.push(reasoning_item(format!("rs_{suffix}"), vec![summary_part(r)]));
        }
        if let Some(t) = m.content.as_deref().filter(|t| !t.is_empty()) {
            output.push(message_item(format!("msg_{suffix}"), "completed", vec![text_part(t)]));
        }
        for (k, call) in m.tool_calls.iter().flatten().enumerate() {
            let fc = format!("fc_{suffix}_{k}");
            output.push(call_item(&fc, &call.id, &call.function.name, &call.function.arguments, tools));
        }
    }
    let status =
        if choice.and_then(|c| c.finish_reason.as_deref()) == Some("length") { "incomplete" } else { "completed" };
    response_object(&id, c.created, &c.model, status, output, usage_json(c.usage.as_ref())).json_text()
}

// ------------------------------------------------------------ streams

/// The output item being streamed.
#[derive(Debug, Clone)]
enum Open {
    Text { id: String, text: String },
    Reasoning { id: String, text: String },
    Call { id: String, call_id: String, name: String, args: String },
}

/// Writes Responses' event sequence from the gateway's events:
/// `response.created` and `response.in_progress`, an output item per
/// reasoning summary, message and function call (`output_item.added`, its
/// deltas, its `.done` events, `output_item.done`), then
/// `response.completed` (or `response.incomplete`) with the whole output
/// and usage. Every event has the next `sequence_number`.
#[derive(Debug, Clone)]
pub struct ResponsesEmitter {
    id: String,
    created: u64,
    model: String,
    adopt_names: bool,
    started: bool,
    seq: u64,
    open: Option<Open>,
    output: Vec<Value>,
    finish: Option<String>,
    usage: Option<Usage>,
    tools: Vec<(String, String, String)>,
}

impl ResponsesEmitter {
    pub fn new(id: String, created: u64, model: String, tools: Vec<(String, String, String)>) -> ResponsesEmitter {
        ResponsesEmitter {
            id: response_id(&id),
            created,
            model,
            adopt_names: true,
            started: false,
            seq: 0,
            open: None,
            output: Vec::new(),
            finish: None,
            usage: None,
            tools,
        }
    }

    fn write(&mut self, out: &mut String, name: &str, mut data: Value) -> u32 {
        if let Value::Object(m) = &mut data {
            m.insert("type".into(), Value::from(name));
            m.insert("sequence_number".into(), Value::from(self.seq));
        }
        self.seq += 1;
        out.push_str("event: ");
        out.push_str(name);
        out.push_str("\ndata: ");
        out.push_str(&data.json_text());
        out.push_str("\n\n");
        1
    }

    fn snapshot(&self, status: &str) -> Value {
        let usage = if status == "in_progress" { Value::Null } else { usage_json(self.usage.as_ref()) };
        response_object(&self.id, self.created, &self.model, status, self.output.clone(), usage)
    }

    fn start(&mut self, out: &mut String) -> u32 {
        if self.started {
            return 0;
        }
        self.started = true;
        let r = self.snapshot("in_progress");
        self.write(out, "response.created", object([("response", r.clone())]))
            + self.write(out, "response.in_progress", object([("response", r)]))
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    fn suffix(&self) -> String {
        format!("{}_{}", self.id.strip_prefix("resp_").unwrap_or(&self.id), self.output.len())
    }

    fn close(&mut self, out: &mut String) -> u32 {
        let Some(open) = self.open.take() else { return 0 };
        let i = self.index();
        let (n, item) = match open {
            Open::Text { id, text } => {
                let part = text_part(&text);
                let n = self.write(
                    out,
                    "response.output_text.done",
                    object([
                        ("item_id", id.as_str().into()),
                        ("output_index", i.into()),
                        ("content_index", 0.into()),
                        ("text", text.into()),
                    ]),
                ) + self.write(
                    out,
                    "response.content_part.done",
                    object([
                        ("item_id", id.as_str().into()),
                        ("output_index", i.into()),
                        ("content_index", 0.into()),
                        ("part", part.clone()),
                    ]),
                );
                (n, message_item(id, "completed", vec![part]))
            }
            Open::Reasoning { id, text } => {
                let part = summary_part(&text);
                let n = self.write(
                    out,
                    "response.reasoning_summary_text.done",
                    object([
                        ("item_id", id.as_str().into()),
                        ("output_index", i.into()),
                        ("summary_index", 0.into()),
                        ("text", text.into()),
                    ]),
                ) + self.write(
                    out,
                    "response.reasoning_summary_part.done",
                    object([
                        ("item_id", id.as_str().into()),
                        ("output_index", i.into()),
                        ("summary_index", 0.into()),
                        ("part", part.clone()),
                    ]),
                );
                (n, reasoning_item(id, vec![part]))
            }
            Open::Call { id, call_id, name, args } => {
                let item = call_item(&id, &call_id, &name, &args, &self.tools);
                let n = self.write(
                    out,
                    "response.function_call_arguments.done",
                    object([
                        ("item_id", id.into()),
                        ("output_index", i.into()),
                        ("name", item.at("name").clone()),
                        ("arguments", args.into()),
                    ]),
                );
                (n, item)
            }
        };
        let n = n + self.write(
            out,
            "response.output_item.done",
            object([("output_index", i.into()), ("item", item.clone())]),
        );
        self.output.push(item);
        n
    }
}

/// Which delta event, of which item.
struct Delta<'a> {
    name: &'a str,
    id: &'a str,
    i: usize,
    /// `content_index` or `summary_index` (always 0 here), if the event has one.
    part: Option<&'a str>,
}

/// A delta event, written once per token without a JSON tree: the next
/// `sequence_number`, the item, and the text.
fn delta(out: &mut String, seq: &mut u64, d: Delta, text: &str) -> u32 {
    out.push_str("event: ");
    out.push_str(d.name);
    out.push_str("\ndata: {\"type\":\"");
    out.push_str(d.name);
    out.push_str("\",\"sequence_number\":");
    out.push_str(&seq.to_string());
    out.push_str(",\"item_id\":");
    super::push_json_str(out, d.id);
    out.push_str(",\"output_index\":");
    out.push_str(&d.i.to_string());
    if let Some(part) = d.part {
        out.push_str(",\"");
        out.push_str(part);
        out.push_str("\":0");
    }
    out.push_str(",\"delta\":");
    super::push_json_str(out, text);
    if d.part == Some("content_index") {
        // Text deltas carry their (here, no) log probabilities.
        out.push_str(",\"logprobs\":[]");
    }
    out.push_str("}\n\n");
    *seq += 1;
    1
}

impl Emit for ResponsesEmitter {
    fn emit(&mut self, ev: &Event, out: &mut String) -> u32 {
        match ev {
            Event::Usage(u) => {
                self.usage = Some(u.clone());
                0
            }
            Event::Start { id, model } => {
                self.adopt(id.as_deref(), model.as_deref());
                0
            }
            Event::Text { choice: 0, text } => {
                let mut n = self.start(out);
                if !matches!(self.open, Some(Open::Text { .. })) {
                    n += self.close(out);
                    let id = format!("msg_{}", self.suffix());
                    let i = self.index();
                    let item = message_item(id.clone(), "in_progress", Vec::new());
                    n += self.write(
                        out,
                        "response.output_item.added",
                        object([("output_index", i.into()), ("item", item)]),
                    );
                    let part = text_part("");
                    n += self.write(
                        out,
                        "response.content_part.added",
                        object([
                            ("item_id", id.as_str().into()),
                            ("output_index", i.into()),
                            ("content_index", 0.into()),
                            ("part", part),
                        ]),
                    );
                    self.open = Some(Open::Text { id, text: String::new() });
                }
                let i = self.index();
                let Self { open: Some(Open::Text { id, text: acc }), seq, .. } = self else { return n };
                acc.push_str(text);
                n + delta(
                    out,
                    seq,
                    Delta { name: "response.output_text.delta", id, i, part: Some("content_index") },
                    text,
                )
            }
            Event::Reasoning { choice: 0, text } => {
                let mut n = self.start(out);
                if !matches!(self.open, Some(Open::Reasoning { .. })) {
                    n += self.close(out);
                    let id = format!("rs_{}", self.suffix());
                    let i = self.index();
                    n += self.write(
                        out,
                        "response.output_item.added",
                        object([("output_index", i.into()), ("item", reasoning_item(id.clone(), Vec::new()))]),
                    );
                    n += self.write(
                        out,
                        "response.reasoning_summary_part.added",
                        object([
                            ("item_id", id.as_str().into()),
                            ("output_index", i.into()),
                            ("summary_index", 0.into()),
                            ("part", summary_part("")),
                        ]),
                    );
                    self.open = Some(Open::Reasoning { id, text: String::new() });
                }
                let i = self.index();
                let Self { open: Some(Open::Reasoning { id, text: acc }), seq, .. } = self else { return n };
                acc.push_str(text);
                let name = "response.reasoning_summary_text.delta";
                n + delta(out, seq, Delta { name, id, i, part: Some("summary_index") }, text)
            }
            Event::ToolStart { choice: 0, id: call_id, name, .. } => {
                let mut n = self.start(out);
                n += self.close(out);
                let id = format!("fc_{}", self.suffix());
                let i = self.index();
                let mut item = call_item(&id, call_id, name, "", &self.tools);
                if let Value::Object(m) = &mut item {
                    m.insert("status".into(), Value::from("in_progress"));
                }
                n +=
                    self.write(out, "response.output_item.added", object([("output_index", i.into()), ("item", item)]));
                self.open = Some(Open::Call { id, call_id: call_id.clone(), name: name.clone(), args: String::new() });
                n
            }
            Event::ToolArgs { choice: 0, args, .. } => {
                let i = self.index();
                let Self { open: Some(Open::Call { id, args: acc, .. }), seq, .. } = self else { return 0 };
                acc.push_str(args);
                delta(out, seq, Delta { name: "response.function_call_arguments.delta", id, i, part: None }, args)
            }
            Event::Finish { choice: 0, reason } => {
                self.finish = Some(reason.clone());
                self.start(out)
            }
            _ => 0,
        }
    }

    fn complete(&mut self, out: &mut String) {
        self.start(out);
        self.close(out);
        let (name, status) = if self.finish.as_deref() == Some("length") {
            ("response.incomplete", "incomplete")
        } else {
            ("response.completed", "completed")
        };
        let r = self.snapshot(status);
        self.write(out, name, object([("response", r)]));
    }

    /// A stream passed through ends with its own terminal event.
    fn end(&mut self, _out: &mut String) {}

    fn fail(&mut self, e: &UpstreamError, out: &mut String) {
        let code = e.kind.as_str();
        // Both shapes: flat fields (the documented event) and the nested
        // `error` object providers send, on which SDKs raise.
        let error = object([
            ("type", "server_error".into()),
            ("code", code.into()),
            ("message", e.message.as_str().into()),
            ("param", Value::Null),
        ]);
        let data = object([
            ("code", code.into()),
            ("message", e.message.as_str().into()),
            ("param", Value::Null),
            ("error", error),
        ]);
        self.write(out, "error", data);
        let mut r = self.snapshot("failed");
        if let Value::Object(m) = &mut r {
            m.insert("error".into(), object([("code", "server_error".into()), ("message", e.message.as_str().into())]));
        }
        self.write(out, "response.failed", object([("response", r)]));
    }

    fn adopt(&mut self, id: Option<&str>, model: Option<&str>) {
        if self.adopt_names && !self.started {
            if let Some(id) = id.filter(|s| !s.is_empty()) {
                self.id = response_id(id);
            }
            if let Some(m) = model.filter(|s| !s.is_empty()) {
                self.model = m.to_owned();
            }
        }
    }

    fn forwarded(&mut self, _event: Option<&str>, _data: &str) {
        // A stream passed through: later events of ours continue its numbering.
        self.started = true;
        self.seq += 1;
    }

    fn continuation(&self) -> Box<dyn Emit> {
        let mut next = self.clone();
        next.adopt_names = false;
        next.started = true;
        Box::new(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use serde_json::json;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/openai-responses/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    }

    #[test]
    fn recorded_requests_translate_to_chat() {
        let r = parse(fixture("request_string_input.json").as_bytes()).unwrap();
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.messages[0].role, Role::User);

        let r = parse(fixture("request_input_items_image.json").as_bytes()).unwrap();
        assert_eq!(r.messages[0].role, Role::System, "instructions lead");
        assert!(r.messages[1].content.as_ref().unwrap().has_image());

        let r = parse(fixture("request_function_tools.json").as_bytes()).unwrap();
        let tools = r.tools.as_ref().unwrap();
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[0].function.strict, Some(true));
        assert!(matches!(r.tool_choice, Some(ToolChoice::Named { .. })));
        assert_eq!(r.parallel_tool_calls, Some(false));

        let r = parse(fixture("request_function_call_output.json").as_bytes()).unwrap();
        let asst = r.messages.iter().find(|m| m.role == Role::Assistant).unwrap();
        let call = &asst.tool_calls.as_ref().unwrap()[0];
        assert!(call.id.starts_with("call_"), "call_id, not the item id, is the tool call's id");
        let tool = r.messages.iter().find(|m| m.role == Role::Tool).unwrap();
        assert_eq!(tool.tool_call_id.as_deref(), Some(call.id.as_str()));

        let r = parse(fixture("request_text_format_json_schema.json").as_bytes()).unwrap();
        let f = r.response_format.unwrap();
        assert_eq!(f.kind, ResponseFormatKind::JsonSchema);
        assert!(f.json_schema.unwrap()["schema"].is_object(), "the flat format nests under json_schema");

        let r = parse(fixture("request_reasoning_max_output_tokens.json").as_bytes()).unwrap();
        assert_eq!(r.reasoning_effort(), Some("high"));
        assert!(r.max_completion_tokens.is_some());
        assert_eq!(stateful_field(r.native.as_ref().unwrap()), None, "store:false is honoured");
    }

    #[test]
    fn namespaces_flatten_and_hosted_tools_are_noted() {
        let body = br#"{"model":"m","input":"hi","store":true,"tools":[
            {"type":"function","name":"shell","parameters":{"type":"object"}},
            {"type":"namespace","name":"mcp_fs","tools":[{"type":"function","name":"read","parameters":{"type":"object"}}]},
            {"type":"web_search"}]}"#;
        let r = parse(body).unwrap();
        let names: Vec<&str> = r.tools.as_ref().unwrap().iter().map(|t| t.function.name.as_str()).collect();
        assert_eq!(names, ["shell", "mcp_fs__read"]);
        let native = r.native.as_ref().unwrap();
        assert_eq!(native.hosted_tools, ["web_search"]);
        assert_eq!(stateful_field(native), Some("store"));
        let e = parse(br#"{"model":"m","input":[{"type":"item_reference","id":"x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0]"));
        let e = parse(br#"{"model":"m","input":[{"role":"robot","content":"x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].role"));
        let stateful = parse(br#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#).unwrap();
        assert_eq!(stateful_field(stateful.native.as_ref().unwrap()), Some("previous_response_id"));
    }

    #[test]
    fn a_completion_renders_as_a_response_with_calls_mapped_back() {
        let c = crate::providers::openai::parse_response(&json!({
            "id":"chatcmpl-7","object":"chat.completion","created":5,"model":"claude",
            "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"ok",
              "tool_calls":[{"id":"call_1","type":"function","function":{"name":"mcp_fs__read","arguments":"{}"}}]}}],
            "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}
        }).to_string()).unwrap();
        let tools = vec![("mcp_fs__read".to_owned(), "mcp_fs".to_owned(), "read".to_owned())];
        let r: Value = serde_json::from_str(&render(&c, &tools)).unwrap();
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"][0]["content"][0]["text"], "ok");
        assert_eq!(r["output"][1]["type"], "function_call");
        assert_eq!(r["output"][1]["call_id"], "call_1");
        assert_eq!(r["output"][1]["name"], "read");
        assert_eq!(r["output"][1]["namespace"], "mcp_fs");
        assert_eq!(r["usage"]["input_tokens"], 10);
        assert_eq!(r["usage"]["total_tokens"], 15);
    }

    fn events(sse: &str) -> Vec<(String, Value)> {
        let mut p = SseParser::default();
        let mut evs = Vec::new();
        p.feed(sse.as_bytes(), &mut evs).unwrap();
        evs.into_iter().map(|e| (e.event.unwrap_or_default(), serde_json::from_str(&e.data).unwrap())).collect()
    }

    #[test]
    fn events_become_the_responses_sequence_numbered_from_zero() {
        let mut em = ResponsesEmitter::new("chatcmpl-1".into(), 9, "m".into(), Vec::new());
        let mut out = String::new();
        for ev in [
            Event::Text { choice: 0, text: "Hi".into() },
            Event::Text { choice: 0, text: " there".into() },
            Event::ToolStart { choice: 0, index: 0, id: "call_1".into(), name: "get".into() },
            Event::ToolArgs { choice: 0, index: 0, args: "{}".into() },
            Event::Finish { choice: 0, reason: "tool_calls".into() },
            Event::Usage(Usage { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5, ..Usage::default() }),
        ] {
            em.emit(&ev, &mut out);
        }
        em.complete(&mut out);
        let evs = events(&out);
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        for (k, (name, data)) in evs.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], k as u64);
        }
        assert_eq!(evs[6].1["text"], "Hi there");
        assert_eq!(evs[9].1["output_index"], 1);
        let done = &evs[13].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"].as_array().unwrap().len(), 2);
        assert_eq!(done["usage"]["output_tokens"], 2);
    }

    #[test]
    fn a_cut_answer_is_incomplete_and_a_broken_one_fails() {
        let mut em = ResponsesEmitter::new("x".into(), 9, "m".into(), Vec::new());
        let mut out = String::new();
        em.emit(&Event::Text { choice: 0, text: "Hi".into() }, &mut out);
        em.emit(&Event::Finish { choice: 0, reason: "length".into() }, &mut out);
        em.complete(&mut out);
        let evs = events(&out);
        let last = &evs.last().unwrap().1;
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");

        let mut em = ResponsesEmitter::new("x".into(), 9, "m".into(), Vec::new());
        let mut out = String::new();
        em.emit(&Event::Text { choice: 0, text: "Hi".into() }, &mut out);
        em.fail(&UpstreamError::new(crate::taxonomy::ErrorKind::Connect, "cut"), &mut out);
        let evs = events(&out);
        let n = evs.len();
        assert_eq!(evs[n - 2].0, "error");
        assert_eq!(evs[n - 2].1["error"]["message"], "cut");
        assert_eq!(evs[n - 1].1["response"]["status"], "failed");
    }
}
