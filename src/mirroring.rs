//! The gateway's side of mirroring: whether a request is mirrored, serving
//! the mirror's answer when the primary fails, and what a finished mirror
//! call does to its provider's health and the route's aggregates. The mirror
//! call and the comparison themselves are in `mirror.rs`.

use crate::api::{ChatCompletion, ChatRequest};
use crate::config::Route;
use crate::gateway::Gateway;
use crate::http::{HEADER_MIRROR, HEADER_MODEL, HEADER_PROVIDER};
use crate::log::RequestLog;
use crate::mirror::{MirrorJob, MirrorLink, MirrorResult};
use crate::record::{Answer, Outcome};
use crate::rng::Rng;
use crate::selection::Availability;

/// Whether this request is mirrored: the route has a mirror, the draw falls
/// under its sample rate, and the mirror is not unavailable.
pub fn job<R: Rng>(gw: &Gateway, route: &Route, req: &ChatRequest, now: u64, rng: &mut R) -> Option<MirrorJob> {
    let m = route.mirror.as_ref()?;
    if m.sample_rate <= 0.0 || rng.next_f64() >= m.sample_rate {
        return None;
    }
    if gw.states().availability(m.target.provider, now) == Availability::Down {
        return None;
    }
    let mut request = req.clone();
    request.stream = None;
    request.stream_options = None;
    // The mirror reads a whole answer in the gateway's terms: the
    // translated request, never a client's native one (which may stream).
    request.native = None;
    Some(MirrorJob {
        route: route.name.clone(),
        target: m.target.clone(),
        request,
        key: gw.key(m.target.provider).map(str::to_owned),
        deadline_ms: now + route.policy.deadline_ms,
    })
}

/// Whether the mirror answered (waiting for it if it is on its way).
pub async fn answered<M: MirrorLink>(mirror: &M) -> bool {
    matches!(mirror.result().await, Some(MirrorResult::Answered { .. }))
}

/// The mirror's answer, served in the primary's place.
pub struct Served {
    pub completion: ChatCompletion,
    /// The completion's OpenAI body (the provider's own, when it speaks OpenAI).
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// The primary failed: the mirror's answer, if it has one (waiting for it if
/// it is still on its way), with the headers that say so.
pub async fn serve<M: MirrorLink>(mirror: &M, log: &mut RequestLog) -> Option<Served> {
    match mirror.result().await? {
        MirrorResult::Answered { answer, completion, body } => {
            log.outcome = Some(Outcome::OkFromMirror);
            log.provider = Some(answer.provider.clone());
            log.model = Some(answer.model.clone());
            log.usage = answer.usage.clone();
            let headers = vec![
                (HEADER_PROVIDER, answer.provider.clone()),
                (HEADER_MODEL, answer.model.clone()),
                (HEADER_MIRROR, "served".to_owned()),
            ];
            Some(Served { completion, body, headers })
        }
        MirrorResult::Failed { .. } => None,
    }
}

/// A mirror call ended: its outcome counts toward the mirror provider's
/// health (a refusal of the request itself does not).
pub fn finished(gw: &Gateway, job: &MirrorJob, r: &MirrorResult, now: u64) {
    let mut states = gw.states_mut();
    match r {
        MirrorResult::Answered { .. } => states.record_success(job.target.provider, now),
        MirrorResult::Failed { kind, .. } if kind.counts_as_provider_failure() => {
            states.record_failure(job.target.provider, *kind, now)
        }
        MirrorResult::Failed { .. } => states.record_alive(job.target.provider, now),
    }
}

/// Compares a primary answer with its mirror's, adds the pair to the route's
/// aggregates, and returns the pair's log line.
pub fn pair(gw: &Gateway, request_id: &str, route: &str, primary: &Answer, m: &MirrorResult, now: u64) -> String {
    gw.add_mirror_pair(route, primary, m, now);
    crate::mirror::pair_line(request_id, route, primary, m)
}

/// The mirror answered (or failed) but there is no primary answer to compare
/// it with: a mirror failure still counts in the aggregates.
pub fn unpaired(gw: &Gateway, route: &str, m: &MirrorResult, now: u64) {
    if let MirrorResult::Failed { .. } = m {
        gw.add_mirror_pair(route, &Answer::default(), m, now);
    }
}
