//! Writes each answer's data point to the Workers Analytics Engine dataset
//! bound as `ANALYTICS` (if it is bound). `writeDataPoint` returns at once:
//! the runtime sends the point after the response, so nothing waits on it.
//! The binding is called directly: one object built per point, no wrapper.

use crate::analytics::{point, BINDING};
use crate::json::JsonText as _;
use crate::log::RequestLog;
use js_sys::{Array, Function, Object, Reflect};
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use worker::Env;

/// The dataset binding and its `writeDataPoint` method.
struct Dataset {
    binding: JsValue,
    write: Function,
}

thread_local! {
    /// The binding, looked up once per isolate (`None` inside: not bound).
    static DATASET: RefCell<Option<Option<Dataset>>> = const { RefCell::new(None) };
}

/// Notes the binding (once per isolate), so that a stream ending later can write too.
pub fn bind(env: &Env) {
    DATASET.with(|d| {
        d.borrow_mut().get_or_insert_with(|| {
            let binding = Reflect::get(env, &BINDING.into()).ok().filter(|v| v.is_object())?;
            let write = Reflect::get(&binding, &"writeDataPoint".into()).ok()?.dyn_into::<Function>().ok()?;
            Some(Dataset { binding, write })
        });
    });
}

/// Writes `log`'s point, if the dataset is bound and the request was a chat answer.
pub fn write(log: &RequestLog) {
    let Some(p) = point(log) else { return };
    DATASET.with(|d| {
        let d = d.borrow();
        let Some(Some(ds)) = d.as_ref() else { return };
        let strings = |items: &[String]| items.iter().map(|s| JsValue::from_str(s)).collect::<Array>();
        let point = Object::new();
        let _ = Reflect::set(&point, &"indexes".into(), &strings(std::slice::from_ref(&p.index)));
        let _ = Reflect::set(&point, &"blobs".into(), &strings(&p.blobs));
        let doubles: Array = p.doubles.iter().map(|&x| JsValue::from_f64(x)).collect();
        let _ = Reflect::set(&point, &"doubles".into(), &doubles);
        if let Err(e) = ds.write.call1(&ds.binding, &point) {
            let detail = e.as_string().or_else(|| Reflect::get(&e, &"message".into()).ok()?.as_string());
            worker::console_error!(
                "{}",
                serde_json::json!({"level":"error","msg":"analytics write failed","detail":detail.unwrap_or_default()})
                    .json_text()
            );
        }
    });
}
