//! Writes each answer's data point to the Workers Analytics Engine dataset
//! bound as `ANALYTICS` (if it is bound). `writeDataPoint` returns at once:
//! the runtime sends the point after the response, so nothing waits on it.

use crate::analytics::{point, BINDING};
use crate::log::RequestLog;
use std::cell::RefCell;
use worker::{AnalyticsEngineDataPointBuilder, AnalyticsEngineDataset, Env};

thread_local! {
    /// The binding, looked up once per isolate (`None` inside: not bound).
    static DATASET: RefCell<Option<Option<AnalyticsEngineDataset>>> = const { RefCell::new(None) };
}

/// Notes the binding (once per isolate), so that a stream ending later can write too.
pub fn bind(env: &Env) {
    DATASET.with(|d| {
        d.borrow_mut().get_or_insert_with(|| {
            let bound = js_sys::Reflect::get(env, &BINDING.into()).ok().is_some_and(|v| v.is_object());
            bound.then(|| env.analytics_engine(BINDING).ok()).flatten()
        });
    });
}

/// Writes `log`'s point, if the dataset is bound and the request was a chat answer.
pub fn write(log: &RequestLog) {
    let Some(p) = point(log) else { return };
    DATASET.with(|d| {
        if let Some(Some(ds)) = d.borrow().as_ref() {
            let [a, b, c, e, f, g] = p.blobs;
            let written = AnalyticsEngineDataPointBuilder::new()
                .indexes([p.index.as_str()])
                .blobs([a, b, c, e, f, g])
                .doubles(p.doubles)
                .write_to(ds);
            if let Err(e) = written {
                worker::console_error!(
                    "{}",
                    serde_json::json!({"level":"error","msg":"analytics write failed","detail":e.to_string()})
                );
            }
        }
    });
}
