//! The checks between files: what the policy declares against what the bindings bind,
//! what the policy reconciles against what each card scores, and what a fixture looks up
//! against what the policy ties to the input and what the records hold.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::{CheckKind, Finding, Severity, display, locate};
use crate::bindings::{BindingEntry, Bindings};
use crate::policy::Policy;
use crate::provenance::expr::Reference;

/// The files a cross-check compares. The policy validated; the bindings hold the entries
/// that loaded (an entry with a problem was reported and is not compared again).
pub(super) struct Context<'a> {
    pub policy: &'a Policy,
    pub policy_text: &'a str,
    pub policy_path: &'a Path,
    pub bindings: &'a Bindings,
    pub entries: &'a [BindingEntry],
    pub bindings_path: Option<&'a Path>,
    /// Whether the bindings file could be read (a file that is not TOML binds nothing, and
    /// saying so for every capability would only repeat its problem).
    pub bindings_read: bool,
    /// The input, parsed, and its file.
    pub input: Option<(&'a Value, &'a Path)>,
}

/// Every problem between the files of `context`.
pub(super) fn check(context: &Context<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    coverage(context, &mut findings);
    labels(context, &mut findings);
    features(context, &mut findings);
    fixture_keys(context, &mut findings);
    references(context, &mut findings);
    findings
}

impl Context<'_> {
    fn at_policy(
        &self,
        severity: Severity,
        kind: CheckKind,
        place: Option<(usize, usize)>,
        field: String,
        message: String,
    ) -> Finding {
        let (line, column) = place.unwrap_or((0, 0));
        Finding {
            severity,
            kind,
            file: display(self.policy_path),
            line,
            column,
            field,
            message,
        }
    }

    fn entry(&self, section: &str, name: &str) -> Option<&BindingEntry> {
        self.entries
            .iter()
            .find(|e| e.section == section && e.name == name)
    }

    fn bindings_name(&self) -> String {
        self.bindings_path
            .map_or_else(|| "the bindings".into(), display)
    }
}

/// Every tool and model the policy declares is bound; every binding is used.
fn coverage(context: &Context<'_>, findings: &mut Vec<Finding>) {
    let policy = context.policy;
    for (section, kind, declared, providers) in [
        (
            "tools",
            "tool",
            &policy.tools,
            "provider = \"fixture\", \"ledger\", \"http\" or \"files\"",
        ),
        (
            "models",
            "model",
            &policy.models,
            "provider = \"scorecard\" or \"chat\"",
        ),
    ] {
        for name in declared {
            if context.entry(section, name).is_some() || !context.bindings_read {
                continue;
            }
            let other = if section == "tools" {
                "models"
            } else {
                "tools"
            };
            let fix = match (context.bindings_path, context.entry(other, name)) {
                (Some(_), Some(_)) => format!(
                    "{} binds `{name}` under [{other}.{name}]; move it to [{section}.{name}]",
                    context.bindings_name()
                ),
                (Some(_), None) => format!(
                    "add [{section}.{name}] with {providers} and its fields (docs/bindings.md) to {}, or remove it from the policy",
                    context.bindings_name()
                ),
                (None, _) => format!(
                    "no bindings file was given: name one (`bindings` in warden.toml, or --bindings) with [{section}.{name}]"
                ),
            };
            findings.push(context.at_policy(
                Severity::Error,
                CheckKind::Unbound,
                locate::quoted(context.policy_text, "capabilities", section, name),
                format!("capabilities.{section}"),
                format!("{kind} `{name}` is declared but not bound, so a run is refused before it starts; {fix}"),
            ));
        }
    }
    let Some(bindings_path) = context.bindings_path else {
        return;
    };
    for entry in context.entries {
        let (kind, declared) = match entry.section {
            "tools" => ("tool", &policy.tools),
            _ => ("model", &policy.models),
        };
        if declared.contains(&entry.name) {
            continue;
        }
        findings.push(Finding {
            severity: Severity::Warning,
            kind: CheckKind::Unused,
            file: display(bindings_path),
            line: entry.line,
            column: entry.column,
            field: format!("{}.{}", entry.section, entry.name),
            message: format!(
                "the policy ({}) declares no {kind} `{}`, so this binding is never used; remove it, or declare it in capabilities.{} (a misspelt name?)",
                display(context.policy_path),
                entry.name,
                entry.section
            ),
        });
    }
}

/// Every gate's label is one its model's card gives a probability for.
fn labels(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for gate in &context.policy.gates {
        let Some(label) = &gate.label else { continue };
        let Some(card) = context.bindings.card(&gate.model) else {
            continue;
        };
        let labels = context.bindings.labels(&gate.model);
        if labels.contains(label) {
            continue;
        }
        let index = locate::gate(context.policy_text, &gate.to);
        let card_file = context
            .bindings
            .card_places(&gate.model)
            .map_or_else(String::new, |(path, _)| format!(" ({})", display(path)));
        if labels.is_empty() {
            // A `chat` model without labels or without log-probabilities: Warden cannot
            // compute any label's probability, so the gate could never be met.
            findings.push(context.at_policy(
                Severity::Error,
                CheckKind::Label,
                index.and_then(|i| locate::key(context.policy_text, "gates", i, "label")),
                index.map_or_else(|| "gates.label".into(), |i| format!("gates[{i}].label")),
                format!(
                    "the gate on `{}` needs the probability of label {label:?}, but model `{}` ({} provider, version {}) gives no per-label probabilities, so the gate could never be met; give the binding `labels` and `logprobs = true` (the host computes each label's probability from token log-probabilities), or gate on another model",
                    gate.to, gate.model, card.provider, card.version
                ),
            ));
            continue;
        }
        findings.push(context.at_policy(
            Severity::Error,
            CheckKind::Label,
            index.and_then(|i| locate::key(context.policy_text, "gates", i, "label")),
            index.map_or_else(|| "gates.label".into(), |i| format!("gates[{i}].label")),
            format!(
                "the gate on `{}` needs the probability of label {label:?}, but the card of model `{}`{card_file}, version {}, gives only {}; correct the label or bind a card that knows it",
                gate.to,
                gate.model,
                card.version,
                labels
                    .iter()
                    .map(|l| format!("{l:?}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        ));
    }
}

/// The features the policy reconciles for a model are exactly those its card scores.
fn features(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for (model, rules) in &context.policy.model_rules {
        let Some(provenance) = &rules.provenance else {
            continue;
        };
        let Some((card_path, places)) = context.bindings.card_places(model) else {
            continue;
        };
        let card: Vec<String> = context.bindings.features(model);
        let (policy_only, card_only) = context.bindings.feature_difference(model, provenance);
        let header = format!("models.{model}.features");
        for name in &policy_only {
            let policy_place = locate::key(context.policy_text, &header, 0, name)
                .map_or_else(String::new, |(line, _)| format!(":{line}"));
            findings.push(Finding {
                severity: Severity::Error,
                kind: CheckKind::Features,
                file: display(card_path),
                line: places.features.0,
                column: places.features.1,
                field: "features".into(),
                message: format!(
                    "the policy ({}{policy_place}, {header}.{name}) reconciles feature `{name}` of model `{model}`, but this card does not score it (it has {}); a request sending it would be refused as an unknown feature. Add it to the card, or correct the name in the policy",
                    display(context.policy_path),
                    card.join(", ")
                ),
            });
        }
        for name in &card_only {
            let i = card.iter().position(|c| c == name).unwrap_or(0);
            let (line, column) = places.feature_names.get(i).copied().unwrap_or((0, 0));
            findings.push(Finding {
                severity: Severity::Error,
                kind: CheckKind::Features,
                file: display(card_path),
                line,
                column,
                field: format!("features[{i}].name"),
                message: format!(
                    "this card scores feature `{name}`, but the policy ({}, [{header}]) declares no source for it, so every inference would be denied (an undeclared feature) or refused (a missing one); declare `{name}` in [{header}], or remove it from the card",
                    display(context.policy_path)
                ),
            });
        }
    }
}

/// A fixture's `key` is the argument the policy's sources tie to the input, and what its
/// records and the input say agree with it.
fn fixture_keys(context: &Context<'_>, findings: &mut Vec<Finding>) {
    let Some(bindings_path) = context.bindings_path else {
        return;
    };
    for entry in context.entries.iter().filter(|e| e.section == "tools") {
        let Some(fixture) = context.bindings.fixture(&entry.name) else {
            continue;
        };
        let key = fixture.key;
        let (line, column) = entry.key_at.unwrap_or((entry.line, entry.column));
        let at_key = |severity, message: String| Finding {
            severity,
            kind: CheckKind::FixtureKey,
            file: display(bindings_path),
            line,
            column,
            field: format!("tools.{}.key", entry.name),
            message,
        };
        // The policy's sources on this tool: which call argument identifies the record.
        let mut tied = Vec::new();
        for (model, rules) in &context.policy.model_rules {
            let Some(provenance) = &rules.provenance else {
                continue;
            };
            for (source, spec) in provenance.sources() {
                if spec.tool == entry.name && !spec.args.is_empty() {
                    tied.push((model, source, spec.args.keys().cloned().collect::<Vec<_>>()));
                }
            }
        }
        let pointer = format!("/{}", key.replace('~', "~0").replace('/', "~1"));
        if let Some((model, source, args)) =
            tied.iter().find(|(_, _, args)| !args.contains(&pointer))
        {
            let suggestion = args
                .iter()
                .find_map(|a| a.strip_prefix('/').filter(|a| !a.contains('/')))
                .map_or_else(String::new, |a| format!("; use key = {a:?}"));
            findings.push(at_key(
                Severity::Error,
                format!(
                    "the fixture looks records up by argument `{key}`, but the policy ({}, models.{model}.sources.{source}) identifies the case by argument {}: a call that the policy can reconcile would find no record{suggestion}",
                    display(context.policy_path),
                    args.join(", ")
                ),
            ));
            continue;
        }
        // Records that carry their own id in a field tell which field they are keyed by.
        let records: Vec<(&str, Value, usize)> = fixture
            .records
            .iter()
            .filter_map(|(id, json, line)| Some((*id, serde_json::from_str(json).ok()?, *line)))
            .collect();
        let carries = |field: &str| {
            !records.is_empty()
                && records
                    .iter()
                    .all(|(id, record, _)| record.get(field).and_then(Value::as_str) == Some(*id))
        };
        if !carries(key)
            && let Some((_, first, _)) = records.first()
            && let Some(field) = first
                .as_object()
                .and_then(|o| o.keys().find(|k| carries(k)))
        {
            findings.push(at_key(
                Severity::Error,
                format!(
                    "every record carries its own id in `{field}`, but key = {key:?}: records are looked up by the call's argument `{key}`; use key = {field:?}"
                ),
            ));
            continue;
        }
        for (id, record, record_line) in &records {
            if let Some(other) = record.get(key).and_then(Value::as_str)
                && other != *id
            {
                findings.push(Finding {
                    severity: Severity::Error,
                    kind: CheckKind::FixtureKey,
                    file: context
                        .bindings_path
                        .and_then(|b| entry.file.as_ref().map(|f| display(&b.parent().unwrap_or(Path::new("")).join(f))))
                        .unwrap_or_default(),
                    line: *record_line,
                    column: 0,
                    field: serde_json::to_string(id).unwrap_or_default(),
                    message: format!(
                        "the record is filed under {id:?} but says {key} = {other:?}; a call with {key} = {other:?} does not find it: file it under {other:?}"
                    ),
                });
            }
        }
        if tied.is_empty()
            && let Some((input, input_path)) = context.input
            && input.is_object()
            && input.get(key).is_none()
        {
            findings.push(at_key(
                Severity::Warning,
                format!(
                    "the input ({}) has no field `{key}`; unless the agent finds the value elsewhere, its `{}` calls will look up nothing",
                    display(input_path),
                    entry.name
                ),
            ));
        }
    }
}

/// What the policy's feature provenance reads exists: input pointers in the input, and
/// source pointers in at least one record of a fixture source.
fn references(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for (model, rules) in &context.policy.model_rules {
        let Some(provenance) = &rules.provenance else {
            continue;
        };
        let mut seen = BTreeSet::new();
        let names: Vec<(&str, &str)> = provenance
            .lets()
            .map(|n| ("let", n))
            .chain(provenance.features().map(|n| ("features", n)))
            .collect();
        for (table, name) in names {
            let Some(expr) = provenance.expr(name) else {
                continue;
            };
            for reference in expr.references() {
                let Reference::Pointer { source, pointer } = reference else {
                    continue;
                };
                if !seen.insert((source.clone(), pointer.clone())) {
                    continue;
                }
                let header = format!("models.{model}.{table}");
                let place = locate::key(context.policy_text, &header, 0, name);
                let field = format!("{header}.{name}");
                match source {
                    None => {
                        let Some((input, input_path)) = context.input else {
                            continue;
                        };
                        if input.pointer(pointer).is_none() {
                            findings.push(context.at_policy(
                                Severity::Warning,
                                CheckKind::Provenance,
                                place,
                                field,
                                format!(
                                    "reads input:{pointer}, which the input ({}) does not have; a run on it would be denied when the agent asks the model. Correct the pointer, or the input",
                                    display(input_path)
                                ),
                            ));
                        }
                    }
                    Some(source) => {
                        let Some(spec) = provenance.sources().get(source) else {
                            continue;
                        };
                        let Some(fixture) = context.bindings.fixture(&spec.tool) else {
                            continue;
                        };
                        let found = fixture.records.iter().any(|(_, json, _)| {
                            serde_json::from_str::<Value>(json)
                                .is_ok_and(|r| r.pointer(pointer).is_some())
                        });
                        if !found && !fixture.records.is_empty() {
                            findings.push(context.at_policy(
                                Severity::Warning,
                                CheckKind::Provenance,
                                place,
                                field,
                                format!(
                                    "reads {source}:{pointer}, but no record of the `{}` fixture has {pointer}; correct the pointer, or the fixture",
                                    spec.tool
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
}
