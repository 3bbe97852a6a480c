//! Choosing targets: a capability filter in front of three strategies.
//!
//! The result is an ordered list of target indexes: the first is tried first,
//! the rest are the failover order. Pure: state comes in as a failure-count
//! function, randomness through [`Rng`].
//!
//! `weighted` lowers a failing target's weight; `priority` and `cost` move a
//! target whose provider has recent failures (a decayed count of at least
//! [`DEMOTE_AT_FAILURES`]) behind the healthy ones, keeping the strategy's own
//! order among each. Unavailable providers (circuit open, health down) are
//! removed afterwards by [`keep_available`].

use crate::api::{ApiError, ChatRequest};
use crate::config::{AllUnavailable, Format, Route, Strategy, Target};
use crate::rng::Rng;

/// What a request needs from a target.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Needs {
    pub vision: bool,
    pub tools: bool,
    pub json: bool,
    pub prompt_tokens: u64,
    /// `logprobs` / `top_logprobs`.
    pub logprobs: bool,
    /// `reasoning_effort`.
    pub reasoning: bool,
    /// `parallel_tool_calls: false`.
    pub sequential_tools: bool,
    /// `n > 1`.
    pub several_choices: bool,
}

impl Needs {
    pub fn of(req: &ChatRequest) -> Needs {
        Needs {
            vision: req.has_images(),
            tools: req.uses_tools(),
            json: req.wants_json(),
            prompt_tokens: req.estimated_prompt_tokens(),
            logprobs: req.wants_logprobs(),
            reasoning: req.reasoning_effort().is_some(),
            sequential_tools: req.forbids_parallel_tools(),
            several_choices: req.choices() > 1,
        }
    }
}

/// `priority` and `cost` put a target behind the healthy ones while its
/// provider's decayed failure count is at least this: two failures in a row
/// keep it there for 0.4 half-lives (two minutes with the default five-minute
/// half-life), three for a half-life; a success clears it at once.
pub const DEMOTE_AT_FAILURES: f64 = 1.5;

/// Why a target cannot serve a request: the request field (for the error's
/// `param`) and what it asks for.
type Unmet = (&'static str, &'static str);

/// Fields that change the answer and that a format cannot express are never
/// dropped: such a target is passed over. An OpenAI-format target gets the
/// request as the client sent it, and its host answers for its models.
fn why_not(t: &Target, format: Format, needs: &Needs) -> Option<Unmet> {
    if needs.vision && !t.caps.vision {
        return Some(("messages", "image input (vision)"));
    }
    if needs.tools && !t.caps.tools {
        return Some(("tools", "tools"));
    }
    if needs.json && !t.caps.json {
        return Some(("response_format", "JSON output (json)"));
    }
    if needs.prompt_tokens > t.context_window {
        return Some(("messages", "a prompt this long (context window)"));
    }
    let openai = format == Format::OpenAi;
    if needs.logprobs && !openai {
        return Some(("logprobs", "`logprobs` (log probabilities)"));
    }
    if needs.reasoning && !openai && !t.caps.reasoning {
        return Some(("reasoning_effort", "`reasoning_effort` (reasoning)"));
    }
    if needs.sequential_tools && format == Format::Cohere {
        return Some(("parallel_tool_calls", "`parallel_tool_calls: false`"));
    }
    if needs.several_choices && !openai {
        return Some(("n", "`n` greater than 1"));
    }
    None
}

/// The route's targets that can serve the request, in configured order, after
/// the client's own order if it gave one. A clear 400 when none can.
pub fn eligible(
    route: &Route,
    format: impl Fn(&Target) -> Format,
    needs: &Needs,
    client_order: Option<&[String]>,
) -> Result<Vec<usize>, ApiError> {
    let base: Vec<usize> = match client_order {
        None => (0..route.targets.len()).collect(),
        Some(order) => {
            if !route.policy.allow_client_order {
                return Err(ApiError::invalid_param(
                    "switchyard.order",
                    format!("route `{}` does not allow a client-chosen order", route.name),
                ));
            }
            if order.is_empty() {
                return Err(ApiError::invalid_param(
                    "switchyard.order",
                    "`switchyard.order` must name at least one target",
                ));
            }
            let mut picked = Vec::new();
            for name in order {
                let found: Vec<usize> = route
                    .targets
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| &t.id == name || route_provider_name(t) == name.as_str())
                    .map(|(i, _)| i)
                    .collect();
                if found.is_empty() {
                    let known: Vec<&str> = route.targets.iter().map(|t| t.id.as_str()).collect();
                    return Err(ApiError::invalid_param(
                        "switchyard.order",
                        format!(
                            "route `{}` has no target `{name}`; its targets are: {}",
                            route.name,
                            crate::text::join(&known, ", ")
                        ),
                    ));
                }
                for i in found {
                    if !picked.contains(&i) {
                        picked.push(i);
                    }
                }
            }
            picked
        }
    };
    let mut reasons: Vec<Unmet> = Vec::new();
    let out: Vec<usize> = base
        .into_iter()
        .filter(|&i| {
            let Some(t) = route.targets.get(i) else { return false };
            match why_not(t, format(t), needs) {
                None => true,
                Some(r) => {
                    if !reasons.contains(&r) {
                        reasons.push(r);
                    }
                    false
                }
            }
        })
        .collect();
    if out.is_empty() {
        let what: Vec<&str> = reasons.iter().map(|r| r.1).collect();
        let mut e = ApiError::invalid(format!(
            "no target of route `{}` supports {}",
            route.name,
            crate::text::join(&what, " and ")
        ));
        let only_context = what == ["a prompt this long (context window)"];
        // The field to blame: the first one a target could not honour, or
        // the route itself when it is only capabilities the route lacks.
        e.param = Some(match reasons.first() {
            Some((p, _)) if !matches!(*p, "messages" | "tools" | "response_format") => (*p).into(),
            _ => "model".into(),
        });
        e.code = Some(if only_context { "context_length_exceeded".into() } else { "unsupported_capability".into() });
        return Err(e);
    }
    Ok(out)
}

/// The provider part of a target id (`provider/model`).
fn route_provider_name(t: &Target) -> &str {
    t.id.split('/').next().unwrap_or("")
}

/// Orders eligible targets by the route's strategy. `failures(i)` is the
/// decayed failure count of target `i`'s provider. With a client order the
/// client's order is kept as given.
pub fn order<R: Rng>(
    route: &Route,
    eligible: Vec<usize>,
    failures: impl Fn(usize) -> f64,
    client_ordered: bool,
    needs: &Needs,
    rng: &mut R,
) -> Vec<usize> {
    if client_ordered {
        return eligible;
    }
    match route.strategy {
        Strategy::Priority => demote_failing(eligible, &failures),
        Strategy::Cost => {
            let mut v = eligible;
            let out_tokens = 500.0;
            let price = |i: usize| {
                route
                    .targets
                    .get(i)
                    .map(|t| t.cost.input * needs.prompt_tokens as f64 + t.cost.output * out_tokens)
                    .filter(|p| !p.is_nan())
                    .unwrap_or(f64::INFINITY)
            };
            // Stable sort: equal prices keep the configured order.
            crate::short_sort::sort_by_key(&mut v, |&i| price(i));
            demote_failing(v, &failures)
        }
        Strategy::Weighted => weighted_order(route, eligible, &failures, rng),
    }
}

/// Moves targets with recent failures behind the others; stable, so each
/// group keeps the order it had.
fn demote_failing(order: Vec<usize>, failures: &impl Fn(usize) -> f64) -> Vec<usize> {
    let (healthy, failing): (Vec<usize>, Vec<usize>) =
        order.into_iter().partition(|&i| failures(i) < DEMOTE_AT_FAILURES);
    healthy.into_iter().chain(failing).collect()
}

/// Whether a target's provider can take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Circuit closed and not reported down.
    Up,
    /// Circuit half-open with no trial out: the next request is its trial.
    Trial,
    /// Circuit open (or its trial is out), or probes say down.
    Down,
}

/// Removes targets whose provider is unavailable, and puts providers due a
/// half-open trial first, so that recovery is noticed within a cooldown
/// whatever their weight or place (one request per cooldown pays for it).
/// When nothing is left, the gateway still tries rather than answer "no
/// healthy providers": every target, in `fallback` order. Returns the order
/// and whether it was forced.
pub fn keep_available(
    order: Vec<usize>,
    availability: impl Fn(usize) -> Availability,
    last_failure_ms: impl Fn(usize) -> u64,
    fallback: AllUnavailable,
) -> (Vec<usize>, bool) {
    let (trial, rest): (Vec<usize>, Vec<usize>) =
        order.into_iter().partition(|&i| availability(i) == Availability::Trial);
    let (up, mut down): (Vec<usize>, Vec<usize>) = rest.into_iter().partition(|&i| availability(i) == Availability::Up);
    if !trial.is_empty() || !up.is_empty() {
        return (trial.into_iter().chain(up).collect(), false);
    }
    if fallback == AllUnavailable::LeastRecentlyFailed {
        // Stable: equal times keep the strategy's order.
        crate::short_sort::sort_by_key(&mut down, |&i| last_failure_ms(i));
    }
    (down, true)
}

/// The effective weight of a target: its configured weight times 0.5^failures
/// (capped, so never zero).
pub fn effective_weight(t: &Target, failures: f64) -> f64 {
    t.weight * crate::failures::half_pow(failures.min(crate::failures::MAX_PENALTY_FAILURES))
}

/// Weighted random order without replacement: the first pick is drawn by
/// effective weight, then the next among the rest, and so on.
fn weighted_order<R: Rng>(
    route: &Route,
    mut left: Vec<usize>,
    failures: &impl Fn(usize) -> f64,
    rng: &mut R,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let weights: Vec<f64> =
            left.iter().map(|&i| route.targets.get(i).map_or(0.0, |t| effective_weight(t, failures(i)))).collect();
        let total: f64 = weights.iter().sum();
        let mut x = rng.next_f64() * total;
        let mut pick = left.len() - 1;
        for (k, w) in weights.iter().enumerate() {
            if x < *w {
                pick = k;
                break;
            }
            x -= w;
        }
        out.push(left.remove(pick));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::rng::SplitMix64;

    fn cfg() -> Config {
        Config::from_json(
            r#"{"providers":{
                "a":{"format":"openai","base_url":"http://127.0.0.1:1/v1"},
                "b":{"format":"anthropic","base_url":"http://127.0.0.1:2"},
                "c":{"format":"cohere","base_url":"http://127.0.0.1:3"}},
              "routes":{
                "w":{"strategy":"weighted","targets":[
                  {"provider":"a","model":"m1","weight":3,"capabilities":["vision","tools"],"context_window":100000},
                  {"provider":"b","model":"m2","weight":1,"capabilities":["tools"],"context_window":200000}]},
                "p":{"strategy":"priority","targets":[
                  {"provider":"a","model":"m1"},{"provider":"b","model":"m2"},{"provider":"c","model":"m3"}]},
                "c":{"strategy":"cost","targets":[
                  {"provider":"a","model":"m1","cost":{"input":3,"output":15}},
                  {"provider":"b","model":"m2","cost":{"input":0.1,"output":0.4}},
                  {"provider":"c","model":"m3","cost":{"input":1,"output":2}}]}}}"#,
        )
        .unwrap()
    }

    fn fmt(c: &Config) -> impl Fn(&Target) -> Format + '_ {
        move |t| c.provider_of(t).format
    }

    #[test]
    fn fields_a_format_cannot_honour_skip_its_targets_or_name_the_field() {
        let c = cfg();
        // Route p: a (openai), b (anthropic), c (cohere).
        let r = c.route("p").unwrap();
        let logprobs = Needs { logprobs: true, ..Needs::default() };
        assert_eq!(eligible(r, fmt(&c), &logprobs, None).unwrap(), vec![0]);
        let n = Needs { several_choices: true, ..Needs::default() };
        assert_eq!(eligible(r, fmt(&c), &n, None).unwrap(), vec![0]);
        let seq = Needs { sequential_tools: true, ..Needs::default() };
        assert_eq!(eligible(r, fmt(&c), &seq, None).unwrap(), vec![0, 1], "anthropic disables parallel calls");
        let reasoning = Needs { reasoning: true, ..Needs::default() };
        assert_eq!(eligible(r, fmt(&c), &reasoning, None).unwrap(), vec![0], "no `reasoning` capability on b, c");
        // Only the anthropic target left: the 400 names the field.
        let only_b = vec!["b".to_owned()];
        let e = eligible(r, fmt(&c), &logprobs, Some(&only_b)).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("logprobs")));
        assert!(e.message.contains("logprobs"), "{}", e.message);
        let e = eligible(r, fmt(&c), &reasoning, Some(&only_b)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    }

    fn first_pick_counts(route: &Route, failures: &[f64], n: u32, seed: u64) -> Vec<u32> {
        let mut rng = SplitMix64::new(seed);
        let mut counts = vec![0u32; route.targets.len()];
        for _ in 0..n {
            let all = (0..route.targets.len()).collect();
            let o = order(route, all, |i| failures[i], false, &Needs::default(), &mut rng);
            counts[o[0]] += 1;
        }
        counts
    }

    /// Pearson's chi-square statistic against expected shares.
    fn chi_square(counts: &[u32], shares: &[f64]) -> f64 {
        let n: u32 = counts.iter().sum();
        counts
            .iter()
            .zip(shares)
            .map(|(&c, &s)| {
                let e = s * n as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum()
    }

    #[test]
    fn weighted_split_follows_weights() {
        let c = cfg();
        let r = c.route("w").unwrap();
        let counts = first_pick_counts(r, &[0.0, 0.0], 20_000, 42);
        // 1 degree of freedom: 10.83 is the 0.1% critical value.
        assert!(chi_square(&counts, &[0.75, 0.25]) < 10.83, "{counts:?}");
    }

    #[test]
    fn failures_cut_the_weight_by_half_each() {
        let c = cfg();
        let r = c.route("w").unwrap();
        // Two failures on `a`: 3 * 0.25 = 0.75 against 1 -> 3/7 and 4/7.
        let counts = first_pick_counts(r, &[2.0, 0.0], 20_000, 7);
        assert!(chi_square(&counts, &[0.75 / 1.75, 1.0 / 1.75]) < 10.83, "{counts:?}");
        // Even a provider with a huge failure count keeps a non-zero weight.
        assert!(effective_weight(&r.targets[0], 1e9) > 0.0);
    }

    #[test]
    fn weighted_order_lists_every_target_once() {
        let c = cfg();
        let r = c.route("w").unwrap();
        let mut rng = SplitMix64::new(1);
        for _ in 0..100 {
            let mut o = order(r, vec![0, 1], |_| 0.0, false, &Needs::default(), &mut rng);
            o.sort();
            assert_eq!(o, vec![0, 1]);
        }
    }

    #[test]
    fn priority_moves_a_failing_provider_behind_the_healthy_ones() {
        let c = cfg();
        let r = c.route("p").unwrap();
        let mut rng = SplitMix64::new(1);
        let needs = Needs::default();
        // No failures, or one: the configured order.
        assert_eq!(order(r, vec![0, 1, 2], |_| 0.0, false, &needs, &mut rng), vec![0, 1, 2]);
        assert_eq!(order(r, vec![0, 1, 2], |i| if i == 0 { 1.0 } else { 0.0 }, false, &needs, &mut rng), vec![0, 1, 2]);
        // Two recent failures on the first: behind the healthy ones.
        let f = |i: usize| if i == 0 { 2.0 } else { 0.0 };
        assert_eq!(order(r, vec![0, 1, 2], f, false, &needs, &mut rng), vec![1, 2, 0]);
        // Stable: among the demoted and among the healthy the configured order stays.
        let f = |i: usize| if i == 2 { 0.0 } else { 3.0 };
        assert_eq!(order(r, vec![0, 1, 2], f, false, &needs, &mut rng), vec![2, 0, 1]);
        let all = |_| 5.0;
        assert_eq!(order(r, vec![0, 1, 2], all, false, &needs, &mut rng), vec![0, 1, 2]);
        // A client's own order is the client's.
        assert_eq!(order(r, vec![0, 1, 2], |_| 9.0, true, &needs, &mut rng), vec![0, 1, 2]);
        assert_eq!(order(r, vec![0, 1], |i| if i == 0 { 9.0 } else { 0.0 }, true, &needs, &mut rng), vec![0, 1]);
    }

    #[test]
    fn cost_orders_cheapest_first() {
        let c = cfg();
        let r = c.route("c").unwrap();
        let mut rng = SplitMix64::new(1);
        let needs = Needs { prompt_tokens: 1000, ..Needs::default() };
        assert_eq!(order(r, vec![0, 1, 2], |_| 0.0, false, &needs, &mut rng), vec![1, 2, 0]);
    }

    #[test]
    fn cost_moves_a_failing_provider_behind_the_dearer_healthy_ones() {
        let c = cfg();
        let r = c.route("c").unwrap();
        let mut rng = SplitMix64::new(1);
        let needs = Needs { prompt_tokens: 1000, ..Needs::default() };
        // The cheapest (1) has failed twice: the healthy ones by price, then it.
        let f = |i: usize| if i == 1 { 2.0 } else { 0.0 };
        assert_eq!(order(r, vec![0, 1, 2], f, false, &needs, &mut rng), vec![2, 0, 1]);
        // Two failing: by price among them too.
        let f = |i: usize| if i == 0 { 0.0 } else { 4.0 };
        assert_eq!(order(r, vec![0, 1, 2], f, false, &needs, &mut rng), vec![0, 1, 2]);
        // Decayed below the threshold: back in its place.
        let f = |i: usize| if i == 1 { 1.4 } else { 0.0 };
        assert_eq!(order(r, vec![0, 1, 2], f, false, &needs, &mut rng), vec![1, 2, 0]);
    }

    #[test]
    fn capability_filter() {
        let c = cfg();
        let r = c.route("w").unwrap();
        let vision = Needs { vision: true, ..Needs::default() };
        assert_eq!(eligible(r, fmt(&c), &vision, None).unwrap(), vec![0]);
        let huge = Needs { prompt_tokens: 150_000, ..Needs::default() };
        assert_eq!(eligible(r, fmt(&c), &huge, None).unwrap(), vec![1]);
        let json = Needs { json: true, ..Needs::default() };
        let e = eligible(r, fmt(&c), &json, None).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("JSON output"), "{}", e.message);
        let both = Needs { vision: true, prompt_tokens: 150_000, ..Needs::default() };
        let e = eligible(r, fmt(&c), &both, None).unwrap_err();
        assert!(e.message.contains("vision") && e.message.contains("context"), "{}", e.message);
    }

    #[test]
    fn unavailable_targets_leave_selection_until_none_is_left() {
        use Availability::*;
        let av = |i: usize| [Up, Down, Up][i];
        let (o, forced) = keep_available(vec![1, 0, 2], av, |_| 0, AllUnavailable::LeastRecentlyFailed);
        assert_eq!((o, forced), (vec![0, 2], false));
        // A provider due its half-open trial goes first.
        let av = |i: usize| [Up, Down, Trial][i];
        let (o, _) = keep_available(vec![0, 1, 2], av, |_| 0, AllUnavailable::LeastRecentlyFailed);
        assert_eq!(o, vec![2, 0]);
        // All down: try them anyway, the one that failed longest ago first.
        let last = |i: usize| [300, 100, 200][i];
        let (o, forced) = keep_available(vec![0, 1, 2], |_| Down, last, AllUnavailable::LeastRecentlyFailed);
        assert_eq!((o, forced), (vec![1, 2, 0], true));
        let (o, _) = keep_available(vec![0, 1, 2], |_| Down, last, AllUnavailable::StrategyOrder);
        assert_eq!(o, vec![0, 1, 2]);
    }

    #[test]
    fn client_order() {
        let c = cfg();
        let r = c.route("p").unwrap();
        let order_ = vec!["c".to_owned(), "a/m1".to_owned()];
        assert_eq!(eligible(r, fmt(&c), &Needs::default(), Some(&order_)).unwrap(), vec![2, 0]);
        let bad = vec!["zzz".to_owned()];
        let e = eligible(r, fmt(&c), &Needs::default(), Some(&bad)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("switchyard.order"));
        assert!(e.message.contains("a/m1"));
    }
}
