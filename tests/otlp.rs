//! OpenTelemetry export (issue #17): `warden run` of the loan example, with the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `--otlp`) pointing at a receiver started here on
//! 127.0.0.1, sends its spans and its decision metrics as OTLP/HTTP protobuf. The test
//! decodes them with `opentelemetry-proto` and checks what a platform engineer would
//! query: one trace per run, `run` → `step` → `host_call`, each span with its run id,
//! step, state, tool or model, verdict and rule; a decision count and a duration
//! histogram by verdict and rule that agree with the spans. Without an endpoint nothing
//! is sent, and a receiver that is down does not change the run's exit code.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;

use crate::support::http_server::{Reply, Server};
use crate::support::{loan_example, output_text};

/// A receiver that accepts every export.
fn receiver() -> Server {
    Server::start(|_| Reply::Raw {
        status: 200,
        headers: vec![("Content-Type".into(), "application/x-protobuf".into())],
        body: Vec::new(),
    })
}

/// `warden --db DB run <loan example> --json EXTRA`, with no OpenTelemetry setting of the
/// developer's shell, and `env` added.
fn run_loan(db: &std::path::Path, extra: &[&str], env: &[(&str, String)]) -> Output {
    let example = loan_example();
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command
        .arg("--db")
        .arg(db)
        .args(["run", example.to_str().expect("utf-8"), "--json"])
        .args(extra)
        .env_remove("WARDEN_DB")
        .env_remove("WARDEN_SIGNING_KEY")
        .env_remove("WARDEN_SUBMITTER");
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run warden")
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn spans(server: &Server) -> (Vec<Span>, Vec<KeyValue>) {
    let mut spans = Vec::new();
    let mut resource = Vec::new();
    for request in server
        .requests()
        .iter()
        .filter(|r| r.target == "/v1/traces")
    {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        let export =
            ExportTraceServiceRequest::decode(request.body.as_slice()).expect("OTLP traces");
        for batch in export.resource_spans {
            resource = batch.resource.map(|r| r.attributes).unwrap_or_default();
            for scope in batch.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    (spans, resource)
}

/// The data points of the metric `name` in the last export that holds it, as (attributes,
/// value or count): the values are cumulative, so the last export has them all.
fn points(server: &Server, name: &str) -> Vec<(Vec<KeyValue>, u64)> {
    let mut last = Vec::new();
    for request in server
        .requests()
        .iter()
        .filter(|r| r.target == "/v1/metrics")
    {
        let export =
            ExportMetricsServiceRequest::decode(request.body.as_slice()).expect("OTLP metrics");
        for metric in export
            .resource_metrics
            .into_iter()
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
            .filter(|m| m.name == name)
        {
            let mut found = Vec::new();
            match metric.data {
                Some(metric::Data::Sum(sum)) => {
                    assert!(sum.is_monotonic, "{name} is a counter");
                    assert_eq!(
                        sum.aggregation_temporality,
                        opentelemetry_proto::tonic::metrics::v1::AggregationTemporality::Cumulative
                            as i32
                    );
                    for point in sum.data_points {
                        let value = match point.value {
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i as u64,
                            other => panic!("{name}: {other:?}"),
                        };
                        found.push((point.attributes, value));
                    }
                }
                Some(metric::Data::Histogram(histogram)) => {
                    assert_eq!(metric.unit, "s", "{name} is in seconds");
                    for point in histogram.data_points {
                        assert!(point.sum.is_some_and(|s| s >= 0.0), "{point:?}");
                        found.push((point.attributes, point.count));
                    }
                }
                other => panic!("{name}: unexpected data {other:?}"),
            }
            last = found;
        }
    }
    last
}

#[test]
fn a_run_exports_its_spans_as_one_trace_and_its_decisions_as_metrics() {
    let server = receiver();
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run_loan(
        &dir.path().join("warden.redb"),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", server.url(""))],
    );
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("report");
    let run_id = report["run_id"].as_str().expect("run id");

    let (spans, resource) = spans(&server);
    assert_eq!(
        attribute(&resource, "service.name").as_deref(),
        Some("warden")
    );
    let named = |name: &'static str| spans.iter().filter(move |s| s.name == name);
    let runs: Vec<&Span> = named("run").collect();
    assert_eq!(runs.len(), 1, "{spans:#?}");
    let run = runs[0];
    assert!(run.parent_span_id.is_empty(), "the run is the trace's root");
    assert_eq!(
        attribute(&run.attributes, "run_id").as_deref(),
        Some(run_id)
    );
    assert_eq!(
        attribute(&run.attributes, "policy").as_deref(),
        Some("loan-underwriting")
    );
    assert_eq!(
        attribute(&run.attributes, "status").as_deref(),
        report["status"].as_str()
    );
    assert_eq!(
        attribute(&run.attributes, "state").as_deref(),
        report["state"].as_str()
    );

    let steps: Vec<&Span> = named("step").collect();
    assert_eq!(
        steps.len() as u64,
        report["steps"].as_u64().expect("steps"),
        "one span per step"
    );
    let mut step_ids = HashMap::new();
    for step in &steps {
        assert_eq!(step.trace_id, run.trace_id, "one trace per run");
        assert_eq!(
            step.parent_span_id, run.span_id,
            "a step is the run's child"
        );
        assert_eq!(
            attribute(&step.attributes, "run_id").as_deref(),
            Some(run_id)
        );
        assert!(attribute(&step.attributes, "state").is_some(), "{step:?}");
        let number = attribute(&step.attributes, "step").expect("step number");
        step_ids.insert(step.span_id.clone(), number);
    }
    let last = steps
        .iter()
        .max_by_key(|s| s.start_time_unix_nano)
        .expect("a step");
    assert_eq!(
        attribute(&last.attributes, "end").as_deref(),
        report["status"].as_str(),
        "the last step ends the run"
    );

    let calls: Vec<&Span> = named("host_call").collect();
    assert_eq!(
        calls.len() as u64,
        report["host_calls"].as_u64().expect("host calls"),
        "one span per host call"
    );
    for call in &calls {
        assert_eq!(call.trace_id, run.trace_id);
        let step = step_ids
            .get(&call.parent_span_id)
            .expect("a host call is a step's child");
        assert_eq!(attribute(&call.attributes, "step").as_ref(), Some(step));
        assert_eq!(
            attribute(&call.attributes, "run_id").as_deref(),
            Some(run_id)
        );
        for key in ["state", "kind", "verdict", "rule"] {
            assert!(
                attribute(&call.attributes, key).is_some(),
                "{key}: {call:?}"
            );
        }
        assert!(call.end_time_unix_nano >= call.start_time_unix_nano);
    }
    let with = |key: &str, value: &str| {
        calls
            .iter()
            .find(|c| attribute(&c.attributes, key).as_deref() == Some(value))
            .unwrap_or_else(|| panic!("no host call with {key} = {value}: {calls:#?}"))
    };
    let bureau = with("tool", "credit_bureau");
    assert_eq!(
        attribute(&bureau.attributes, "kind").as_deref(),
        Some("tool")
    );
    assert_eq!(
        attribute(&bureau.attributes, "verdict").as_deref(),
        Some("allow")
    );
    let scorecard = with("model", "pd_scorecard");
    assert_eq!(
        attribute(&scorecard.attributes, "kind").as_deref(),
        Some("model")
    );
    let transition = with("kind", "transition");
    assert!(
        attribute(&transition.attributes, "rule")
            .is_some_and(|r| r.starts_with("transition_") || r.starts_with("gate_")),
        "{transition:?}"
    );

    // The decision metrics agree with the spans: one count and one duration per call.
    let mut expected: HashMap<(String, String), u64> = HashMap::new();
    for call in &calls {
        let key = (
            attribute(&call.attributes, "verdict").expect("verdict"),
            attribute(&call.attributes, "rule").expect("rule"),
        );
        *expected.entry(key).or_default() += 1;
    }
    for metric in ["warden.decisions", "warden.decision.duration"] {
        let mut counted: HashMap<(String, String), u64> = HashMap::new();
        for (attributes, value) in points(&server, metric) {
            let key = (
                attribute(&attributes, "verdict").expect("verdict"),
                attribute(&attributes, "rule").expect("rule"),
            );
            *counted.entry(key).or_default() += value;
        }
        assert_eq!(counted, expected, "{metric}");
    }
}

#[test]
fn the_flag_exports_too_nothing_is_sent_without_an_endpoint_and_a_dead_receiver_is_harmless() {
    let server = receiver();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("warden.redb");
    let output = run_loan(&db, &["--otlp", &server.url("/")], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let (spans, _) = spans(&server);
    assert!(spans.iter().any(|s| s.name == "run"), "{spans:#?}");
    assert!(
        server.requests().iter().any(|r| r.target == "/v1/metrics"),
        "metrics are sent to the flag's base URL too"
    );

    let quiet = receiver();
    let output = run_loan(&db, &[], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    assert!(quiet.requests().is_empty());
    let disabled = run_loan(
        &db,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", quiet.url("")),
            ("OTEL_SDK_DISABLED", "true".into()),
        ],
    );
    assert_eq!(
        disabled.status.code(),
        Some(0),
        "{}",
        output_text(&disabled)
    );
    assert!(
        quiet.requests().is_empty(),
        "OTEL_SDK_DISABLED=true sends nothing"
    );

    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let output = run_loan(
        &db,
        &["--otlp", &format!("http://127.0.0.1:{closed_port}")],
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".into())],
    );
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    assert!(
        output_text(&output).contains("warning: OpenTelemetry export of spans over OTLP failed"),
        "{}",
        output_text(&output)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a dead receiver held the process for {:?}",
        started.elapsed()
    );
}
