//! A pass-through worker: forwards the incoming request (method, headers and
//! body stream) to `UPSTREAM` + the request's path, and returns the upstream's
//! response as it is (its body is never read into wasm).
use worker::*;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let upstream = env.var("UPSTREAM")?.to_string();
    let url = req.url()?;
    let target = format!("{}{}", upstream, url.path());
    let mut init = RequestInit::new();
    init.with_method(req.method());
    init.with_headers(req.headers().clone());
    init.with_body(req.inner().body().map(Into::into));
    let out = Request::new_with_init(&target, &init)?;
    Fetch::Request(out).send().await
}
