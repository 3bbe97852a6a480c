//! Configuration: providers, routes and policies, parsed from the JSON that
//! wrangler.toml's `[vars] SWITCHYARD_CONFIG` table becomes, and validated
//! once per isolate. Every error names the offending field.

mod read;
mod security;
mod state;
pub(crate) use security::is_loopback;

pub use security::Security;
pub use state::{BreakerSettings, HealthSettings, StateSettings};

use read::read_struct;
use std::fmt;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub providers: Vec<ProviderConfig>,
    /// Routes in name order (the order `/v1/models` lists them).
    pub routes: Vec<Route>,
    pub state: StateSettings,
    pub breaker: BreakerSettings,
    pub health: HealthSettings,
    /// Longest a health probe may take.
    pub probe_timeout_ms: u64,
    /// What to do when every eligible target's circuit is open or its health down.
    pub when_all_unavailable: AllUnavailable,
    /// Log prompt text in the request log line (off by default).
    pub log_prompts: bool,
    /// Which requests get a log line.
    pub log_requests: RequestLogs,
    pub security: Security,
}

/// A provider's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI Chat Completions, and every OpenAI-compatible host.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Cohere Chat v2.
    Cohere,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "openai" => Some(Format::OpenAi),
            "anthropic" => Some(Format::Anthropic),
            "cohere" => Some(Format::Cohere),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenAi => "openai",
            Format::Anthropic => "anthropic",
            Format::Cohere => "cohere",
        }
    }
}

/// Which requests get a log line (`log_requests`). Circuit and health
/// transitions and KV writes are logged whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestLogs {
    /// Every request (the default).
    #[default]
    All,
    /// Requests that failed, or that needed more than one attempt, or whose
    /// stream broke: what an operator investigates.
    Errors,
    /// None: for the lowest cost per request when another layer logs.
    Off,
}

impl RequestLogs {
    pub fn parse(s: &str) -> Option<RequestLogs> {
        match s {
            "all" => Some(RequestLogs::All),
            "errors" => Some(RequestLogs::Errors),
            "off" => Some(RequestLogs::Off),
            _ => None,
        }
    }
}

/// A route's mirror.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub target: Target,
    /// Share of requests mirrored, 0 to 1.
    pub sample_rate: f64,
}

/// When no eligible target is available, the gateway does not give up without
/// trying: it tries them anyway, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllUnavailable {
    /// The target whose provider failed longest ago first.
    LeastRecentlyFailed,
    /// The strategy's own order.
    StrategyOrder,
}

/// How the cron trigger checks a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The list-models endpoint: authenticated, costs no tokens.
    Models,
    /// A one-token completion with this model, for providers whose list
    /// endpoint stays up while completions fail.
    Completion(String),
    /// Not probed.
    Off,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub format: Format,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The Worker secret holding the API key; `None` for keyless local servers.
    pub key_secret: Option<String>,
    /// The header the key goes in, lower case: `authorization` (sent as
    /// `Bearer <key>`) or any other (the key as it is). Defaults to the
    /// format's own: `authorization` (OpenAI, Cohere), `x-api-key` (Anthropic).
    pub key_header: String,
    /// Extra headers sent on every request (never secrets: use `key_secret`).
    pub headers: Vec<(String, String)>,
    /// Anthropic only: the `anthropic-version` header.
    pub anthropic_version: String,
    /// Output limit sent when the client gives none and the format requires one (Anthropic).
    pub default_max_tokens: u32,
    /// Per-provider override of the route's attempt timeout.
    pub timeout_ms: Option<u64>,
    pub probe: Probe,
    /// OpenAI format only: the host also serves the Responses API
    /// (`POST {base_url}/responses`), so a Responses request reaches it as is.
    pub responses: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Priority,
    Weighted,
    Cost,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capabilities {
    pub vision: bool,
    pub tools: bool,
    pub json: bool,
    /// Continues a partial assistant message given as the last message
    /// (Anthropic's models before Claude 4.6 do; some OpenAI-compatible servers do).
    pub prefill: bool,
    /// Thinks before answering when asked (`reasoning_effort`): translated for
    /// Anthropic and Cohere targets, which need it to be served such requests.
    pub reasoning: bool,
    /// Serves `/v1/embeddings` (an embedding model).
    pub embeddings: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// US dollars per million input tokens.
    pub input: f64,
    /// US dollars per million output tokens.
    pub output: f64,
    /// US dollars per million cached input tokens; `None`: the input price.
    pub cached: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Target {
    /// `provider/model`: what logs, headers and the client's `order` use.
    pub id: String,
    /// Index into [`Config::providers`].
    pub provider: usize,
    pub model: String,
    pub weight: f64,
    pub cost: Cost,
    pub caps: Capabilities,
    pub context_window: u64,
    /// Targets with the `embeddings` capability: which vectors it returns.
    /// Failover for an embeddings request stays within one space (vectors of
    /// different models must never be mixed). Defaults to the model name.
    pub embedding_space: String,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Other model names that mean this route: exact names, or a prefix
    /// ending in `*` (clients such as Claude Code ask for their own names).
    pub aliases: Vec<String>,
    pub strategy: Strategy,
    pub targets: Vec<Target>,
    pub policy: Policy,
    pub mirror: Option<MirrorConfig>,
    /// Responses API hosted tools (web_search, file_search...) for targets
    /// that cannot run them: left out (and said so), or refused.
    pub hosted_tools: HostedTools,
}

/// What a route does with hosted tools a target cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostedTools {
    /// Left out of the request; a response header and the log line say which.
    Drop,
    /// The request gets a 400 naming the tool.
    Reject,
}

/// Bounds on one request's attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Time allowed for one attempt (head and body).
    pub attempt_timeout_ms: u64,
    /// Time allowed for the whole request, all attempts and waits included.
    pub deadline_ms: u64,
    /// Upstream attempts per request, over all targets (subrequest budget).
    pub max_attempts: u32,
    /// Extra attempts at the same target for retryable failures.
    pub retries_per_target: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Longest Retry-After the gateway waits out at the same provider.
    pub max_retry_after_ms: u64,
    /// Whether a request may name its own fallback order.
    pub allow_client_order: bool,
    /// Streaming: time allowed until the first content chunk; failing over
    /// is still invisible to the client until then.
    pub first_token_timeout_ms: u64,
    /// Streaming: longest silence once content flows, before the stream is
    /// declared stalled.
    pub stream_idle_timeout_ms: u64,
    /// Streaming: after a cut or stall, continue the answer on a target with
    /// the `prefill` capability, so the client still gets one whole answer.
    pub continue_on_failure: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempt_timeout_ms: 30_000,
            deadline_ms: 60_000,
            max_attempts: 6,
            retries_per_target: 1,
            backoff_base_ms: 200,
            backoff_max_ms: 2_000,
            max_retry_after_ms: 5_000,
            allow_client_order: true,
            first_token_timeout_ms: 15_000,
            stream_idle_timeout_ms: 30_000,
            continue_on_failure: true,
        }
    }
}

/// Upper bound on attempts: Workers allow 50 subrequests per request on Free,
/// and KV reads and a mirror need some of them.
pub const MAX_ATTEMPTS_CAP: u32 = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Dotted path of the offending field, e.g. `routes.chat.targets[1].provider`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration at `{}`: {}", self.field, self.message)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

// ------------------------------------------------------------ raw shape (read.rs)

read_struct!(RawConfig {
    required: [providers, routes],
    optional: [policy, state, breaker, health, log_prompts, log_requests, auth, cors, limits, rate_limit],
});
read_struct!(RawProvider {
    required: [format, base_url],
    optional: [
        key_secret,
        key_header,
        headers,
        anthropic_version,
        default_max_tokens,
        timeout_ms,
        probe,
        probe_model,
        responses
    ],
});
read_struct!(RawRoute { required: [targets], optional: [aliases, hosted_tools, strategy, policy, mirror] });
read_struct!(RawMirror { required: [target, sample_rate], optional: [cost] });
read_struct!(RawTarget {
    required: [provider, model],
    optional: [weight, cost, capabilities, context_window, embedding_space],
});
read_struct!(RawCost { required: [input, output], optional: [cached] });
read_struct!(RawPolicy {
    required: [],
    optional: [
        attempt_timeout_ms,
        deadline_ms,
        max_attempts,
        retries_per_target,
        backoff_base_ms,
        backoff_max_ms,
        max_retry_after_ms,
        allow_client_order,
        first_token_timeout_ms,
        stream_idle_timeout_ms,
        continue_on_failure,
    ],
});

struct RawConfig {
    providers: Vec<(String, RawProvider)>,
    routes: Vec<(String, RawRoute)>,
    policy: RawPolicy,
    state: state::RawState,
    breaker: state::RawBreaker,
    health: state::RawHealth,
    log_prompts: bool,
    log_requests: Option<String>,
    auth: security::RawAuth,
    cors: security::RawCors,
    limits: security::RawLimits,
    rate_limit: Option<security::RawRateLimit>,
}

struct RawProvider {
    format: String,
    base_url: String,
    key_secret: Option<String>,
    key_header: Option<String>,
    headers: Vec<(String, String)>,
    anthropic_version: Option<String>,
    default_max_tokens: Option<u32>,
    timeout_ms: Option<u64>,
    probe: Option<String>,
    probe_model: Option<String>,
    responses: Option<bool>,
}

struct RawRoute {
    aliases: Option<Vec<String>>,
    hosted_tools: Option<String>,
    strategy: Option<String>,
    targets: Vec<RawTarget>,
    policy: RawPolicy,
    mirror: Option<RawMirror>,
}

struct RawMirror {
    /// `provider/model`.
    target: String,
    sample_rate: f64,
    cost: Option<RawCost>,
}

struct RawTarget {
    provider: String,
    model: String,
    weight: Option<f64>,
    cost: Option<RawCost>,
    capabilities: Option<Vec<String>>,
    context_window: Option<u64>,
    embedding_space: Option<String>,
}

struct RawCost {
    input: f64,
    output: f64,
    cached: Option<f64>,
}

#[derive(Default, Clone, Copy)]
struct RawPolicy {
    attempt_timeout_ms: Option<u64>,
    deadline_ms: Option<u64>,
    max_attempts: Option<u32>,
    retries_per_target: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    max_retry_after_ms: Option<u64>,
    allow_client_order: Option<bool>,
    first_token_timeout_ms: Option<u64>,
    stream_idle_timeout_ms: Option<u64>,
    continue_on_failure: Option<bool>,
}

impl RawPolicy {
    fn apply(&self, base: Policy, at: &str) -> Result<Policy, ConfigError> {
        let p = Policy {
            attempt_timeout_ms: self.attempt_timeout_ms.unwrap_or(base.attempt_timeout_ms),
            deadline_ms: self.deadline_ms.unwrap_or(base.deadline_ms),
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            retries_per_target: self.retries_per_target.unwrap_or(base.retries_per_target),
            backoff_base_ms: self.backoff_base_ms.unwrap_or(base.backoff_base_ms),
            backoff_max_ms: self.backoff_max_ms.unwrap_or(base.backoff_max_ms),
            max_retry_after_ms: self.max_retry_after_ms.unwrap_or(base.max_retry_after_ms),
            allow_client_order: self.allow_client_order.unwrap_or(base.allow_client_order),
            first_token_timeout_ms: self.first_token_timeout_ms.unwrap_or(base.first_token_timeout_ms),
            stream_idle_timeout_ms: self.stream_idle_timeout_ms.unwrap_or(base.stream_idle_timeout_ms),
            continue_on_failure: self.continue_on_failure.unwrap_or(base.continue_on_failure),
        };
        if p.first_token_timeout_ms == 0 || p.stream_idle_timeout_ms == 0 {
            return Err(err(format!("{at}.first_token_timeout_ms"), "stream timeouts must be greater than 0"));
        }
        if p.attempt_timeout_ms == 0 {
            return Err(err(format!("{at}.attempt_timeout_ms"), "must be greater than 0"));
        }
        if p.deadline_ms < p.attempt_timeout_ms {
            return Err(err(format!("{at}.deadline_ms"), "must be at least attempt_timeout_ms"));
        }
        if p.max_attempts == 0 || p.max_attempts > MAX_ATTEMPTS_CAP {
            return Err(err(
                format!("{at}.max_attempts"),
                format!("must be between 1 and {MAX_ATTEMPTS_CAP} (Workers' subrequest limit)"),
            ));
        }
        if p.backoff_max_ms < p.backoff_base_ms {
            return Err(err(format!("{at}.backoff_max_ms"), "must be at least backoff_base_ms"));
        }
        Ok(p)
    }
}

impl Config {
    /// Parses and validates a configuration from JSON text.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let tree: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            let path =
                crate::json_path::error_path(text.as_bytes(), &e).unwrap_or_else(|| "SWITCHYARD_CONFIG".to_owned());
            err(path, crate::json_path::message_of(&e))
        })?;
        let raw = <RawConfig as read::Read>::read(&tree, "")?;
        Self::validate(raw)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut providers = Vec::new();
        for (name, p) in &raw.providers {
            let at = format!("providers.{name}");
            if !valid_name(name) {
                return Err(err(at, "provider names use letters, digits, '-' and '_'"));
            }
            let format = Format::parse(&p.format).ok_or_else(|| {
                err(format!("{at}.format"), format!("unknown format `{}`: use openai, anthropic or cohere", p.format))
            })?;
            let base_url = p.base_url.trim_end_matches('/').to_owned();
            if !(base_url.starts_with("https://") || base_url.starts_with("http://")) || base_url.len() < 10 {
                return Err(err(format!("{at}.base_url"), "must be an http(s) URL"));
            }
            security::check_base_url(&at, &base_url, p.key_secret.is_some())?;
            if base_url.contains('?') || base_url.contains('#') {
                return Err(err(format!("{at}.base_url"), "must not carry a query or fragment"));
            }
            if let Some(s) = &p.key_secret {
                if s.is_empty() {
                    return Err(err(format!("{at}.key_secret"), "must name a Worker secret"));
                }
            }
            let default_header = if format == Format::Anthropic { "x-api-key" } else { "authorization" };
            let key_header =
                security::key_header(&at, p.key_header.as_deref(), default_header, p.key_secret.is_some())?;
            security::check_headers(&at, p.headers.iter().map(|(k, _)| k), &key_header)?;
            if p.timeout_ms == Some(0) {
                return Err(err(format!("{at}.timeout_ms"), "must be greater than 0"));
            }
            let probe = match (p.probe.as_deref().unwrap_or("models"), &p.probe_model) {
                ("models", _) => Probe::Models,
                ("off", _) => Probe::Off,
                ("completion", Some(m)) if !m.is_empty() => Probe::Completion(m.clone()),
                ("completion", _) => {
                    return Err(err(format!("{at}.probe_model"), "a completion probe needs the model to ask"))
                }
                (other, _) => {
                    return Err(err(
                        format!("{at}.probe"),
                        format!("unknown probe `{other}`: use models, completion or off"),
                    ))
                }
            };
            providers.push(ProviderConfig {
                name: name.clone(),
                format,
                base_url,
                key_secret: p.key_secret.clone(),
                key_header,
                headers: p.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                anthropic_version: p.anthropic_version.clone().unwrap_or_else(|| "2023-06-01".to_owned()),
                default_max_tokens: p.default_max_tokens.unwrap_or(4096),
                timeout_ms: p.timeout_ms,
                probe,
                responses: p.responses.unwrap_or(false),
            });
        }

        let base_policy = raw.policy.apply(Policy::default(), "policy")?;
        if raw.routes.is_empty() {
            return Err(err("routes", "at least one route is needed"));
        }
        let mut routes = Vec::new();
        for (name, r) in &raw.routes {
            let at = format!("routes.{name}");
            if name.trim().is_empty() {
                return Err(err(at, "route names must not be empty"));
            }
            let strategy = match r.strategy.as_deref().unwrap_or("priority") {
                "priority" => Strategy::Priority,
                "weighted" => Strategy::Weighted,
                "cost" => Strategy::Cost,
                other => {
                    return Err(err(
                        format!("{at}.strategy"),
                        format!("unknown strategy `{other}`: use priority, weighted or cost"),
                    ))
                }
            };
            if r.targets.is_empty() {
                return Err(err(format!("{at}.targets"), "a route needs at least one target"));
            }
            let mut targets: Vec<Target> = Vec::new();
            for (i, t) in r.targets.iter().enumerate() {
                let tat = format!("{at}.targets[{i}]");
                let provider = providers.iter().position(|p| p.name == t.provider).ok_or_else(|| {
                    err(format!("{tat}.provider"), format!("no provider named `{}` is configured", t.provider))
                })?;
                if t.model.trim().is_empty() {
                    return Err(err(format!("{tat}.model"), "must name the upstream model"));
                }
                let weight = t.weight.unwrap_or(1.0);
                if !(weight.is_finite() && weight > 0.0) {
                    return Err(err(format!("{tat}.weight"), "must be a positive number"));
                }
                let cost = match &t.cost {
                    Some(c) => {
                        let price = |p: f64| p.is_finite() && p >= 0.0;
                        if !(price(c.input) && price(c.output) && c.cached.is_none_or(price)) {
                            return Err(err(format!("{tat}.cost"), "prices must be non-negative numbers"));
                        }
                        Cost { input: c.input, output: c.output, cached: c.cached }
                    }
                    None if strategy == Strategy::Cost => {
                        return Err(err(format!("{tat}.cost"), "the cost strategy needs a price on every target"))
                    }
                    None => Cost::default(),
                };
                let mut caps = Capabilities::default();
                for (j, c) in t.capabilities.iter().flatten().enumerate() {
                    match c.as_str() {
                        "vision" => caps.vision = true,
                        "tools" => caps.tools = true,
                        "json" => caps.json = true,
                        "prefill" => caps.prefill = true,
                        "reasoning" => caps.reasoning = true,
                        "embeddings" => caps.embeddings = true,
                        other => {
                            return Err(err(
                                format!("{tat}.capabilities[{j}]"),
                                format!("unknown capability `{other}`: use vision, tools, json, prefill, reasoning or embeddings"),
                            ))
                        }
                    }
                }
                let id = format!("{}/{}", t.provider, t.model);
                if targets.iter().any(|x| x.id == id) {
                    return Err(err(tat, format!("target `{id}` appears twice in the route")));
                }
                let context_window = t.context_window.unwrap_or(8_192);
                if context_window == 0 {
                    return Err(err(format!("{tat}.context_window"), "must be greater than 0"));
                }
                let embedding_space = t.embedding_space.clone().unwrap_or_else(|| t.model.clone());
                targets.push(Target {
                    id,
                    provider,
                    model: t.model.clone(),
                    weight,
                    cost,
                    caps,
                    context_window,
                    embedding_space,
                });
            }
            let policy = r.policy.apply(base_policy, &format!("{at}.policy"))?;
            let mirror = match &r.mirror {
                None => None,
                Some(m) => Some(mirror_config(m, &format!("{at}.mirror"), &providers, &targets)?),
            };
            let hosted_tools = match r.hosted_tools.as_deref().unwrap_or("drop") {
                "drop" => HostedTools::Drop,
                "reject" => HostedTools::Reject,
                other => {
                    return Err(err(
                        format!("{at}.hosted_tools"),
                        format!("unknown value `{other}`: use drop or reject"),
                    ))
                }
            };
            let aliases = r.aliases.clone().unwrap_or_default();
            for (j, a) in aliases.iter().enumerate() {
                let bare = a.strip_suffix('*').unwrap_or(a);
                if bare.is_empty() || bare.contains('*') {
                    return Err(err(
                        format!("{at}.aliases[{j}]"),
                        "an alias is a model name, or a prefix followed by one `*`",
                    ));
                }
            }
            routes.push(Route { name: name.clone(), aliases, strategy, targets, policy, mirror, hosted_tools });
        }

        let state::Resilience { state, breaker, health, probe_timeout_ms, when_all_unavailable } =
            state::validate(&raw.state, &raw.breaker, &raw.health)?;
        let security = security::validate(&security::RawSecurity {
            auth: &raw.auth,
            cors: &raw.cors,
            limits: &raw.limits,
            rate_limit: &raw.rate_limit,
        })?;
        let log_requests = match raw.log_requests.as_deref() {
            None => RequestLogs::All,
            Some(v) => RequestLogs::parse(v)
                .ok_or_else(|| err("log_requests", format!("unknown value `{v}`: use all, errors or off")))?,
        };
        Ok(Config {
            security,
            providers,
            routes,
            state,
            breaker,
            health,
            probe_timeout_ms,
            when_all_unavailable,
            log_prompts: raw.log_prompts,
            log_requests,
        })
    }

    /// The route a client's `model` names: a route by its name, else by an
    /// exact alias, else by the longest alias prefix (`claude-*`).
    pub fn route(&self, name: &str) -> Option<&Route> {
        if let Some(r) = self.routes.iter().find(|r| r.name == name) {
            return Some(r);
        }
        if let Some(r) = self.routes.iter().find(|r| r.aliases.iter().any(|a| a == name)) {
            return Some(r);
        }
        self.routes
            .iter()
            .flat_map(|r| r.aliases.iter().filter_map(move |a| Some((a.strip_suffix('*')?, r))))
            .filter(|(prefix, _)| name.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, r)| r)
    }

    /// The provider a target names. Targets are made only by validation,
    /// which sets `provider` to the index of a configured provider.
    #[allow(clippy::indexing_slicing)]
    pub fn provider_of(&self, t: &Target) -> &ProviderConfig {
        &self.providers[t.provider]
    }
}

fn mirror_config(
    m: &RawMirror,
    at: &str,
    providers: &[ProviderConfig],
    targets: &[Target],
) -> Result<MirrorConfig, ConfigError> {
    if !(0.0..=1.0).contains(&m.sample_rate) {
        return Err(err(format!("{at}.sample_rate"), "must be between 0 and 1"));
    }
    let (pname, model) = m
        .target
        .split_once('/')
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
        .ok_or_else(|| err(format!("{at}.target"), "must be `provider/model`"))?;
    let provider = providers
        .iter()
        .position(|p| p.name == pname)
        .ok_or_else(|| err(format!("{at}.target"), format!("no provider named `{pname}` is configured")))?;
    // A route target of the same id lends its prices and capabilities.
    let known = targets.iter().find(|t| t.id == m.target);
    let cost = match (&m.cost, known) {
        (Some(c), _) => Cost { input: c.input, output: c.output, cached: c.cached },
        (None, Some(t)) => t.cost,
        (None, None) => Cost::default(),
    };
    let target = Target {
        id: m.target.clone(),
        provider,
        model: model.to_owned(),
        weight: 1.0,
        cost,
        caps: known.map(|t| t.caps).unwrap_or_default(),
        context_window: known.map_or(u64::MAX, |t| t.context_window),
        embedding_space: model.to_owned(),
    };
    Ok(MirrorConfig { target, sample_rate: m.sample_rate })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "providers": {
        "openai": {"format":"openai","base_url":"https://api.openai.com/v1/","key_secret":"OPENAI_API_KEY"},
        "claude": {"format":"anthropic","base_url":"https://api.anthropic.com","key_secret":"ANTHROPIC_API_KEY"}
      },
      "routes": {
        "chat": {"strategy":"weighted","targets":[
          {"provider":"openai","model":"gpt-4o-mini","weight":3,"capabilities":["vision","tools"],"context_window":128000},
          {"provider":"claude","model":"claude-sonnet-4-5","weight":1}
        ], "policy": {"max_attempts": 4}}
      },
      "policy": {"attempt_timeout_ms": 10000}
    }"#;

    #[test]
    fn parses_a_good_config() {
        let c = Config::from_json(GOOD).unwrap();
        assert_eq!(c.providers.len(), 2);
        let r = c.route("chat").unwrap();
        assert_eq!(r.strategy, Strategy::Weighted);
        assert_eq!(r.targets[0].id, "openai/gpt-4o-mini");
        assert_eq!(c.provider_of(&r.targets[0]).base_url, "https://api.openai.com/v1");
        assert!(r.targets[0].caps.vision && !r.targets[1].caps.vision);
        assert_eq!(r.policy.max_attempts, 4);
        assert_eq!(r.policy.attempt_timeout_ms, 10_000, "global policy applies under the route's");
        assert_eq!(c.provider_of(&r.targets[1]).anthropic_version, "2023-06-01");
    }

    fn field_of(json: &str) -> String {
        Config::from_json(json).unwrap_err().field
    }

    #[test]
    fn log_requests_defaults_to_all_and_rejects_unknown_values() {
        assert_eq!(Config::from_json(GOOD).unwrap().log_requests, RequestLogs::All);
        let quiet = GOOD.replacen('{', r#"{"log_requests":"errors","#, 1);
        assert_eq!(Config::from_json(&quiet).unwrap().log_requests, RequestLogs::Errors);
        assert_eq!(field_of(&GOOD.replacen('{', r#"{"log_requests":"some","#, 1)), "log_requests");
    }

    #[test]
    fn providers_routes_and_headers_keep_the_order_written() {
        let c = Config::from_json(
            r#"{"providers":{"zed":{"format":"openai","base_url":"https://z.example/v1","headers":{"x-b":"1","x-a":"2"}},
                             "amy":{"format":"openai","base_url":"https://a.example/v1"}},
                "routes":{"later":{"targets":[{"provider":"amy","model":"m"}]},
                          "early":{"targets":[{"provider":"zed","model":"m"}]}}}"#,
        )
        .unwrap();
        let names = |v: Vec<&str>| crate::text::join(&v, ",");
        assert_eq!(names(c.providers.iter().map(|p| p.name.as_str()).collect()), "zed,amy");
        assert_eq!(names(c.routes.iter().map(|r| r.name.as_str()).collect()), "later,early");
        assert_eq!(names(c.providers[0].headers.iter().map(|(k, _)| k.as_str()).collect()), "x-b,x-a");
        // Targets name providers by index: the order changes nothing there.
        assert_eq!(c.provider_of(&c.routes[0].targets[0]).name, "amy");
        let e = Config::from_json(
            r#"{"providers":{"a":{"format":"openai","base_url":"https://a.example/v1"},"b":{"format":"nope","base_url":"x"}},
                "routes":{"r":{"targets":[{"provider":"a","model":"m"}]}}}"#,
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "providers.b.format");
    }

    #[test]
    fn routes_answer_to_their_aliases() {
        let c = Config::from_json(&GOOD.replace(
            r#""chat": {"strategy":"weighted","#,
            r#""chat": {"aliases":["gpt-4o","claude-*","claude-opus-*"],"strategy":"weighted","#,
        ))
        .unwrap();
        assert_eq!(c.route("chat").map(|r| r.name.as_str()), Some("chat"));
        assert_eq!(c.route("gpt-4o").map(|r| r.name.as_str()), Some("chat"));
        assert_eq!(c.route("claude-opus-4-8").map(|r| r.name.as_str()), Some("chat"));
        assert!(c.route("gpt-4o-mini").is_none(), "an exact alias is not a prefix");
        assert_eq!(
            field_of(&GOOD.replace(r#""chat": {"strategy""#, r#""chat": {"aliases":["a*b"],"strategy""#)),
            "routes.chat.aliases[0]"
        );
        assert_eq!(
            field_of(&GOOD.replace(r#""chat": {"strategy""#, r#""chat": {"hosted_tools":"keep","strategy""#)),
            "routes.chat.hosted_tools"
        );
    }

    #[test]
    fn errors_name_the_offending_field() {
        assert_eq!(
            field_of(&GOOD.replace("\"provider\":\"claude\"", "\"provider\":\"nope\"")),
            "routes.chat.targets[1].provider"
        );
        assert_eq!(
            field_of(&GOOD.replace("\"format\":\"anthropic\"", "\"format\":\"bard\"")),
            "providers.claude.format"
        );
        assert_eq!(field_of(&GOOD.replace("\"weighted\"", "\"random\"")), "routes.chat.strategy");
        assert_eq!(field_of(&GOOD.replace("\"weight\":3", "\"weight\":-1")), "routes.chat.targets[0].weight");
        assert_eq!(field_of(&GOOD.replace("\"vision\",", "\"telepathy\",")), "routes.chat.targets[0].capabilities[0]");
        assert_eq!(
            field_of(&GOOD.replace("\"max_attempts\": 4", "\"max_attempts\": 400")),
            "routes.chat.policy.max_attempts"
        );
        assert_eq!(
            field_of(&GOOD.replace("\"weight\":1}", "\"weight\":1,\"wieght\":2}")),
            "routes.chat.targets[1].wieght"
        );
        assert_eq!(field_of(&GOOD.replace("https://api.anthropic.com", "ftp://x")), "providers.claude.base_url");
        assert_eq!(field_of("{"), "SWITCHYARD_CONFIG");
        let e = Config::from_json(&GOOD.replace("\"weighted\"", "\"cost\"")).unwrap_err();
        assert_eq!(e.field, "routes.chat.targets[0].cost");
        assert!(e.to_string().contains("routes.chat.targets[0].cost"));
    }
}
