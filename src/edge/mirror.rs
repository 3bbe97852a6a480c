//! Mirror calls at the edge: run in `waitUntil`, so that the client never
//! waits for them, and compared with the primary's answer after the response.

use super::clock::WorkerClock;
use super::kv::KvState;
use super::upstream::FetchUpstream;
use super::{log_flush, STATE_BINDING};
use crate::gateway::Gateway;
use crate::log::RequestLog;
use crate::mirror::{self, MirrorJob, MirrorLink, MirrorResult};
use crate::mirroring;
use crate::record::Answer;
use crate::slot::Slot;
use std::cell::Cell;
use std::rc::Rc;
use worker::{console_log, Context, Env};

/// Runs a request's mirror call in `waitUntil` and hands its result to
/// whoever asks.
pub struct EdgeMirror<'a> {
    pub gw: Rc<Gateway>,
    pub ctx: &'a Context,
    pub slot: Slot<MirrorResult>,
    pub started: Cell<bool>,
}

impl<'a> EdgeMirror<'a> {
    pub fn new(gw: Rc<Gateway>, ctx: &'a Context) -> Self {
        EdgeMirror { gw, ctx, slot: Slot::new(), started: Cell::new(false) }
    }
}

impl MirrorLink for EdgeMirror<'_> {
    fn start(&self, job: MirrorJob) {
        self.started.set(true);
        let gw = self.gw.clone();
        let slot = self.slot.clone();
        self.ctx.wait_until(async move {
            let r = mirror::run(&gw.config, &job, &WorkerClock, &FetchUpstream).await;
            mirroring::finished(&gw, &job, &r, crate::clock::Clock::now_ms(&WorkerClock));
            slot.set(r);
        });
    }

    async fn result(&self) -> Option<MirrorResult> {
        if !self.started.get() {
            return None;
        }
        Some(self.slot.wait().await)
    }
}

/// After the response (and, for a stream, after its last chunk): compare the
/// primary's answer with the mirror's, log the pair, and share the route's
/// aggregates within KV's write limits.
pub fn compare_after_response(
    gw: &Rc<Gateway>,
    env: &Env,
    ctx: &Context,
    log: &RequestLog,
    mirror: Slot<MirrorResult>,
    primary: Slot<Option<Answer>>,
) {
    let gw = gw.clone();
    let kv = KvState::bound(env, STATE_BINDING);
    let request_id = log.request_id.clone();
    let route = log.route.clone().unwrap_or_default();
    ctx.wait_until(async move {
        let m = mirror.wait().await;
        let now = crate::clock::Clock::now_ms(&WorkerClock);
        let Some(p) = primary.wait().await else {
            // No primary answer to compare (it failed, or the mirror served).
            mirroring::unpaired(&gw, &route, &m, now);
            return;
        };
        console_log!("{}", mirroring::pair(&gw, &request_id, &route, &p, &m, now));
        if let Some(kv) = kv {
            log_flush(gw.flush_mirror(&kv, now).await);
        }
    });
}
