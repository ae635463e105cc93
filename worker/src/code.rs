//! What a function's compiled code is and so which call path it takes: linking decides it once,
//! at deploy, and every call dispatches on the answer.

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::cgi;
use crate::compile::Compiled;
use crate::error::DeployError;
use crate::host::{CgiHost, Host};

/// A function's code, pre-linked: every import resolved, the export found.
#[derive(Clone)]
pub(crate) enum Code {
    /// A component exporting `wasi:http/incoming-handler` 0.2: instances lent to one call at a
    /// time (see `function::p2`).
    P2(ProxyPre<Host>),
    /// A component exporting `wasi:http/handler` 0.3: instances that take several calls at once
    /// (see `function::p3`).
    P3(ServicePre<Host>),
    /// A WASI 0.1 command, run once per request (see `function::cgi`).
    Cgi(wasmtime::InstancePre<CgiHost>),
}

impl Code {
    /// What the code exports, as `wafer list` shows it.
    pub(crate) fn interface(&self) -> &'static str {
        match self {
            Code::P2(_) => "wasi:http 0.2",
            Code::P3(_) => "wasi:http 0.3",
            Code::Cgi(_) => "wasi 0.1 command",
        }
    }

    /// The engine that compiled it: its instances' stores must be of that engine.
    pub(crate) fn engine(&self) -> &Engine {
        match self {
            Code::P2(pre) => pre.engine(),
            Code::P3(pre) => pre.engine(),
            Code::Cgi(pre) => pre.module().engine(),
        }
    }

    /// Whether one instance takes several calls at once.
    pub(crate) fn concurrent(&self) -> bool {
        matches!(self, Code::P3(_))
    }
}

/// What wafer provides to guests, linked once per worker: WASI 0.2 and 0.3 and wasi:http 0.2
/// and 0.3 for components, WASI 0.1 for core modules.
pub(crate) struct Linkers {
    engine: Engine,
    components: Linker<Host>,
    modules: wasmtime::Linker<CgiHost>,
}

impl Linkers {
    pub(crate) fn new(engine: &Engine) -> wasmtime::Result<Linkers> {
        let mut components = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut components)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut components)?;
        wasmtime_wasi::p3::add_to_linker(&mut components)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut components)?;
        let mut modules = wasmtime::Linker::new(engine);
        CgiHost::add_to_linker(&mut modules)?;
        Ok(Linkers {
            engine: engine.clone(),
            components,
            modules,
        })
    }

    /// Pre-links compiled code: resolves every import once, checks the exports.
    pub(crate) fn link(&self, compiled: &Compiled) -> Result<Code, DeployError> {
        match compiled {
            Compiled::Component(component) => self.link_component(component),
            Compiled::Module(module) => {
                cgi::check_command(module).map_err(DeployError::Invalid)?;
                self.modules
                    .instantiate_pre(module)
                    .map(Code::Cgi)
                    .map_err(|e| {
                        DeployError::Invalid(format!(
                            "the core module imports something wafer does not provide (wafer provides WASI 0.1, `wasi_snapshot_preview1`): {e:#}"
                        ))
                    })
            }
        }
    }

    /// Links a component and finds its handler: `wasi:http/incoming-handler` 0.2 (the proxy
    /// world) or `wasi:http/handler` 0.3 (the service world).
    fn link_component(&self, component: &Component) -> Result<Code, DeployError> {
        let pre = self.components.instantiate_pre(component).map_err(|e| {
            DeployError::Invalid(format!(
                "the component imports something wafer does not provide (wafer provides WASI 0.2 and 0.3, wasi:http 0.2 and 0.3): {e:#}"
            ))
        })?;
        let p2_error = match ProxyPre::new(pre.clone()) {
            Ok(proxy) => return Ok(Code::P2(proxy)),
            Err(e) => e,
        };
        if let Ok(service) = ServicePre::new(pre) {
            return Ok(Code::P3(service));
        }
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        Err(DeployError::Invalid(format!(
            "the component exports neither `wasi:http/incoming-handler` (0.2.x) nor `wasi:http/handler` (0.3.x); it exports {}: {p2_error:#}",
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        )))
    }
}
