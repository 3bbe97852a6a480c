//! What exists only on wasm32: the Workers clock, the isolate's randomness,
//! and reading configuration and secrets out of JS values. Run with
//! wasm-bindgen-test in Node (`npm test` does it).

use super::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

const CONFIG: &str = r#"{"providers":{"p":{"format":"openai","base_url":"http://127.0.0.1:9/v1","key_secret":"P_KEY"}},
  "routes":{"chat":{"targets":[{"provider":"p","model":"m"}]}}}"#;

fn env_with(config: JsValue, secret: Option<&str>) -> Env {
    let obj = js_sys::Object::new();
    js_sys::Reflect::set(&obj, &CONFIG_BINDING.into(), &config).unwrap();
    if let Some(s) = secret {
        js_sys::Reflect::set(&obj, &"P_KEY".into(), &JsValue::from_str(s)).unwrap();
    }
    obj.unchecked_into::<Env>()
}

#[wasm_bindgen_test]
fn clock_reads_date_now() {
    let before = js_sys::Date::now() as u64;
    let t = WorkerClock.now_ms();
    let after = js_sys::Date::now() as u64;
    assert!(before <= t && t <= after, "{before} {t} {after}");
}

// `sleep` runs on `Delay` (setTimeout as Workers define it, which Node's
// differs from): the end-to-end tests in workerd exercise it.

#[wasm_bindgen_test]
fn request_generators_are_seeded_from_platform_randomness() {
    let mut a = request_rng();
    let mut b = request_rng();
    let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
    let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
    assert_ne!(xs, ys, "each request draws its own stream");
    let mut seed = [0u8; 16];
    getrandom::fill(&mut seed).unwrap();
    assert_ne!(seed, [0u8; 16]);
}

#[wasm_bindgen_test]
fn config_is_read_from_a_json_string_or_an_object_var() {
    let from_string = load_gateway(&env_with(JsValue::from_str(CONFIG), Some("sk-1"))).unwrap();
    assert!(from_string.config.route("chat").is_some());
    // wrangler turns a TOML table under [vars] into a JS object.
    let object = js_sys::JSON::parse(CONFIG).unwrap();
    let from_object = load_gateway(&env_with(object, Some("sk-1"))).unwrap();
    assert_eq!(from_object.config.providers[0].name, "p");
}

#[wasm_bindgen_test]
fn a_bad_or_missing_config_names_the_problem() {
    let bad = CONFIG.replace("\"openai\"", "\"palm\"");
    let err = load_gateway(&env_with(JsValue::from_str(&bad), None)).err().unwrap();
    assert!(err.contains("providers.p.format"), "{err}");
    let err = load_gateway(&env_with(JsValue::UNDEFINED, None)).err().unwrap();
    assert!(err.contains("SWITCHYARD_CONFIG"), "{err}");
}

#[wasm_bindgen_test]
fn secrets_are_read_from_env_bindings() {
    let gw = load_gateway(&env_with(JsValue::from_str(CONFIG), Some("sk-from-secret"))).unwrap();
    let missing = load_gateway(&env_with(JsValue::from_str(CONFIG), None)).unwrap();
    assert!(gw.has_key(0));
    assert!(!missing.has_key(0));
}

#[wasm_bindgen_test]
fn a_binding_that_is_not_a_string_is_no_secret() {
    let env = env_with(JsValue::from_str(CONFIG), None);
    js_sys::Reflect::set(&env, &"P_KEY".into(), &js_sys::Object::new()).unwrap();
    assert_eq!(secret(&env, "P_KEY"), None);
    assert!(!load_gateway(&env).unwrap().has_key(0));
}

#[wasm_bindgen_test]
fn an_answer_is_written_to_the_analytics_binding() {
    use crate::log::RequestLog;
    use crate::record::Outcome;
    // A stand-in for the dataset binding: it keeps the points it is given.
    let env = env_with(JsValue::from_str(CONFIG), None);
    let dataset = js_sys::Object::new();
    let keep = js_sys::Function::new_with_args("p", "(globalThis.__sy_points ||= []).push(p)");
    js_sys::Reflect::set(&dataset, &"writeDataPoint".into(), &keep).unwrap();
    js_sys::Reflect::set(&env, &crate::analytics::BINDING.into(), &dataset).unwrap();
    analytics::bind(&env);

    analytics::write(&RequestLog::default()); // not a chat answer: no point
    let log = RequestLog {
        route: Some("chat".into()),
        provider: Some("p".into()),
        model: Some("m".into()),
        outcome: Some(Outcome::Ok),
        latency_ms: 42,
        cost_usd: Some(0.25),
        ..Default::default()
    };
    analytics::write(&log);

    let points = js_sys::Reflect::get(&js_sys::global(), &"__sy_points".into()).unwrap();
    let json = js_sys::JSON::stringify(&points).unwrap().as_string().unwrap();
    assert_eq!(json, r#"[{"indexes":["chat"],"blobs":["chat","p","m","","ok","0"],"doubles":[42,0,0,0,0.25]}]"#);
}

#[wasm_bindgen_test]
fn keys_hash_to_sha256_on_wasm() {
    // On wasm32 SHA-256 runs its compact software rounds; the standard's vectors hold.
    use crate::auth::hash_key;
    assert_eq!(hash_key(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(hash_key(two_blocks), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
