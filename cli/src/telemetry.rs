//! The binary's telemetry: the tracing subscriber that logs to standard error, and, when
//! an OTLP endpoint is given, the OpenTelemetry export of the library's spans and of
//! decision metrics. Libraries emit spans; only the binary installs a subscriber.
//!
//! Export is off by default. `--otlp URL` (the base of an OTLP/HTTP receiver, such as
//! `http://127.0.0.1:4318`) or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
//! per-signal `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `_METRICS_ENDPOINT`) turns it on;
//! `OTEL_SDK_DISABLED=true` keeps it off. Exported, whatever `-v` says:
//!
//! - the spans `run` (run_id, policy, status, state), `step` (run_id, step, state, end)
//!   and `host_call` (run_id, call, step, state, kind, tool or model, verdict, rule), as
//!   one trace per run, a host call the child of its step, a step of its run;
//! - the metrics `warden.decisions` (a counter) and `warden.decision.duration` (a
//!   histogram, seconds: the host call from its decoding to its answer, enforcement and
//!   provider included), each by `verdict`, `rule`, `kind` and `tool` or `model`.
//!
//! The protocol is OTLP over HTTP with protobuf bodies, sent with ureq: no async runtime.
//! Spans are batched on a background thread; the process flushes both signals before it
//! exits, waiting at most `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds, default 10 000) per
//! request. A receiver that is down costs a warning, never the run's exit code.

use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The environment variables that name an OTLP endpoint.
const ENDPOINT_VARS: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
];
/// Default per-request export timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a receiver's answer read.
const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// What was installed: the providers to flush before the process exits.
pub struct Telemetry {
    exporting: Option<(SdkTracerProvider, SdkMeterProvider)>,
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporters. A failure is a warning:
    /// telemetry never changes a command's outcome.
    pub fn shutdown(self) {
        let Some((tracer, meter)) = self.exporting else {
            return;
        };
        // A flush reports a failed export; the shutdown after it stops the thread. The
        // meter's shutdown exports its last (cumulative) values itself.
        let spans = tracer.force_flush().and(tracer.shutdown());
        let metrics = meter.shutdown();
        for (signal, result) in [("spans", spans), ("metrics", metrics)] {
            if let Err(e) = result {
                eprintln!("warning: OpenTelemetry export of {signal} over OTLP failed: {e}");
            }
        }
    }
}

/// Installs the subscriber: logs to standard error as `verbose` (or `RUST_LOG`) says, and
/// exports to the OTLP endpoint of `otlp` or of the environment, if there is one.
pub fn install(verbose: u8, otlp: Option<&str>) -> anyhow::Result<Telemetry> {
    let default = match verbose {
        0 => "warn",
        1 => "warden=info",
        _ => "warden=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let Some(endpoint) = endpoint(otlp) else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry { exporting: None });
    };
    let (tracer, meter) = providers(&endpoint)?;
    // Every span of the library, at any verbosity: the export is its own audience.
    let library = || Targets::new().with_target("warden", Level::DEBUG);
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer.tracer("warden"))
        .with_filter(library());
    let decisions = DecisionMetrics::new(&meter).with_filter(library());
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .with(decisions)
        .init();
    Ok(Telemetry {
        exporting: Some((tracer, meter)),
    })
}

/// Where to export: the flag's base URL, or the environment's (left to the exporter,
/// which reads the standard variables).
enum Endpoint {
    Base(String),
    FromEnvironment,
}

fn endpoint(flag: Option<&str>) -> Option<Endpoint> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    if let Some(base) = flag {
        return Some(Endpoint::Base(base.trim_end_matches('/').to_string()));
    }
    ENDPOINT_VARS
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
        .then_some(Endpoint::FromEnvironment)
}

fn providers(endpoint: &Endpoint) -> anyhow::Result<(SdkTracerProvider, SdkMeterProvider)> {
    let timeout = std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    let client = UreqClient::new(timeout);
    let at = |path: &str| match endpoint {
        Endpoint::Base(base) => Some(format!("{base}{path}")),
        Endpoint::FromEnvironment => None,
    };
    let mut spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(timeout);
    if let Some(url) = at("/v1/traces") {
        spans = spans.with_endpoint(url);
    }
    let mut metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(timeout);
    if let Some(url) = at("/v1/metrics") {
        metrics = metrics.with_endpoint(url);
    }
    let spans = spans
        .build()
        .map_err(|e| anyhow::anyhow!("OTLP span exporter: {e}"))?;
    let metrics = metrics
        .build()
        .map_err(|e| anyhow::anyhow!("OTLP metric exporter: {e}"))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("warden");
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let meter = SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .with_resource(resource)
        .build();
    Ok((tracer, meter))
}

/// OTLP/HTTP requests sent with ureq, blocking: the exporters call it from their own
/// background threads.
#[derive(Debug, Clone)]
struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    fn new(timeout: Duration) -> UreqClient {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // The exporter reads the status itself (a 4xx is not retried, a 503 may be).
            .http_status_as_error(false)
            .build();
        UreqClient {
            agent: config.into(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut answer = self
            .agent
            .run(http::Request::from_parts(parts, body.to_vec()))?;
        let status = answer.status();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()?;
        Ok(http::Response::builder()
            .status(status)
            .body(Bytes::from(body))?)
    }
}

/// Turns every closed `host_call` span into the decision metrics: one count and one
/// duration, by verdict, rule, kind and capability.
struct DecisionMetrics {
    decisions: Counter<u64>,
    duration: Histogram<f64>,
}

impl DecisionMetrics {
    fn new(provider: &SdkMeterProvider) -> DecisionMetrics {
        let meter = provider.meter("warden");
        DecisionMetrics {
            decisions: meter
                .u64_counter("warden.decisions")
                .with_unit("{decision}")
                .with_description("Host calls decided by the policy, by verdict and rule")
                .build(),
            duration: meter
                .f64_histogram("warden.decision.duration")
                .with_unit("s")
                .with_description(
                    "Time of a host call from its decoding to its answer: enforcement, and the provider for a tool or model",
                )
                .build(),
        }
    }
}

/// What a `host_call` span said, kept in its extensions until it closes.
struct HostCall {
    started: Instant,
    kind: Option<String>,
    tool: Option<String>,
    model: Option<String>,
    verdict: Option<String>,
    rule: Option<String>,
}

impl Visit for HostCall {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "kind" => &mut self.kind,
            "tool" => &mut self.tool,
            "model" => &mut self.model,
            "verdict" => &mut self.verdict,
            "rule" => &mut self.rule,
            _ => return,
        };
        *slot = Some(value.to_string());
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S> Layer<S> for DecisionMetrics
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        if attributes.metadata().name() != "host_call" {
            return;
        }
        let mut call = HostCall {
            started: Instant::now(),
            kind: None,
            tool: None,
            model: None,
            verdict: None,
            rule: None,
        };
        attributes.record(&mut call);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(call);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        if let Some(span) = context.span(id)
            && let Some(call) = span.extensions_mut().get_mut::<HostCall>()
        {
            values.record(call);
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else {
            return;
        };
        let Some(call) = span.extensions_mut().remove::<HostCall>() else {
            return;
        };
        // A call refused before enforcement (a malformed request) has no decision.
        let (Some(verdict), Some(rule)) = (call.verdict, call.rule) else {
            return;
        };
        let mut attributes = vec![
            KeyValue::new("verdict", verdict),
            KeyValue::new("rule", rule),
            KeyValue::new("kind", call.kind.unwrap_or_default()),
        ];
        if let Some(tool) = call.tool {
            attributes.push(KeyValue::new("tool", tool));
        }
        if let Some(model) = call.model {
            attributes.push(KeyValue::new("model", model));
        }
        self.decisions.add(1, &attributes);
        self.duration
            .record(call.started.elapsed().as_secs_f64(), &attributes);
    }
}
