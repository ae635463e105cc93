//! A WASI 0.1 command call, CGI style: admit, take a slot, read the request body, run the
//! module's `_start` in a fresh store under the timeout, and turn its output into a response
//! (the protocol itself is `crate::cgi`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime::InstancePre;
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use super::Function;
use crate::backend::{Body, CallStart, Request, Response};
use crate::cgi;
use crate::error::InvokeError;
use crate::host::CgiHost;
use crate::logs::{GuestOutput, OutputBudget, Stream};

/// The most a module may write to stdout for one response.
const MAX_OUTPUT: usize = 16 << 20;
/// The most request body a module gets on stdin (the gateway's own limit usually applies first).
const MAX_INPUT: usize = 64 << 20;

/// Runs one request through the module.
pub(super) async fn invoke(
    function: &Arc<Function>,
    pre: &InstancePre<CgiHost>,
    request: Request,
) -> Result<Response, InvokeError> {
    let lease = function
        .pool
        .lease(&function.name)
        .await
        .map_err(|e| function.refused(e))?;
    let started = Instant::now();
    let result =
        match tokio::time::timeout(function.config.limits.timeout, run(function, pre, request))
            .await
        {
            Ok(result) => result,
            Err(_elapsed) => Err(function.timed_out()),
        };
    drop(lease);
    match result {
        Ok((response, ran_long)) => {
            function.succeeded(started, ran_long);
            Ok(response)
        }
        Err(error) => Err(function.failed(error, started)),
    }
}

/// Instantiates the module in a fresh store and runs it to its end; also says whether it ran on
/// the CPU past the short-call budget.
async fn run(
    function: &Function,
    pre: &InstancePre<CgiHost>,
    request: Request,
) -> Result<(Response, bool), InvokeError> {
    let limits = &function.config.limits;
    let slot = function.capacity.take_slot(&function.name)?;
    let traced = CallStart::wanted(&request);
    let (parts, body) = request.into_parts();
    let body = read_body(body).await.map_err(|reason| InvokeError::Guest {
        function: function.name.to_string(),
        reason,
    })?;
    let stdout = MemoryOutputPipe::new(MAX_OUTPUT);
    let budget = Arc::new(OutputBudget::default());
    budget.reset(limits.log_bytes_per_call);
    let environment = cgi::environment(&function.config, &parts, body.len());
    let clock = function.capacity.clock(Some(function.standing.clone()));
    let mut store = CgiHost::store(pre.module().engine(), limits.memory, &clock, |wasi| {
        wasi.envs(&environment)
            .arg(function.name.as_ref())
            .stdin(MemoryInputPipe::new(body))
            .stdout(stdout.clone())
            .stderr(GuestOutput {
                sink: function.logs.clone(),
                stream: Stream::Stderr,
                budget,
            });
    });
    let instantiating = Instant::now();
    let instance = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| InvokeError::instantiate(&function.name, &e))?;
    let instantiate = instantiating.elapsed();
    function.metrics.cold_start();
    function.metrics.instantiated(instantiate);
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| InvokeError::instantiate(&function.name, &e))?;
    let exit = match start.call_async(&mut store, ()).await {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => *code,
            None => {
                return Err(InvokeError::from_trap(
                    &function.name,
                    limits.memory,
                    store.data().hit_memory_limit(),
                    &e,
                ));
            }
        },
    };
    let ran_long = clock.ran_long();
    drop(store);
    drop(slot);
    let mut response = cgi::parse_output(&function.name, stdout.contents(), exit)?;
    let start = CallStart {
        cold: true,
        instantiate: Some(instantiate),
    };
    start.tell(traced, &mut response);
    Ok((response, ran_long))
}

async fn read_body(mut body: Body) -> Result<Bytes, String> {
    let mut bytes = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("could not read the request body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_INPUT {
                return Err(format!("the request body is over {MAX_INPUT} bytes"));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.freeze())
}
