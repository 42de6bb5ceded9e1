/*
 * A claims-triage agent in C: the agent `warden new` writes in Rust, ported line for line,
 * run by Warden under the same policy.toml, bindings and sample claims.
 *
 * One step per state of the policy: `intake` checks the claim, `coverage_check` asks the
 * policy register about the claim's insurance policy, `assess` asks the `claim_risk`
 * scorecard and proposes a decision, and in `approved` or `declined` the agent finishes
 * with its decision and the reasons for it.
 *
 * The agent proposes; the policy disposes. It may propose `approved`, but the policy's
 * confidence gate decides whether the run gets there or stops in `manual_review` for a
 * claims handler.
 *
 * The claim is the run's input, and each step reads it again rather than keeping a copy:
 * a fork with a patched input then sees the patch. What the agent learns from tools stays
 * in `learned`, a static variable: it lives in the module's memory, which Warden
 * checkpoints at every step boundary, so it persists between steps.
 *
 * Build: ../../wardencc claims_triage.wasm agent.c     Run: warden run .    Test: warden test
 */
#include "warden.h"

/* A claim reported later than this after the incident is declined at intake. */
#define MAX_REPORT_DELAY_DAYS 365
/* The agent proposes approval below this probability that the claim is suspicious, and
 * refers the claim to a claims handler otherwise. */
#define APPROVE_BELOW 0.15
/* More reasons than any path through the policy gives. */
#define MAX_REASONS 8

/* A claim, the run's input. */
typedef struct claim {
    const char *claim_id;
    const char *policy_number;
    double amount;
    uint64_t incident_days_ago;
    const char *description;
} claim;

/* What the agent has learned so far. */
static struct {
    /* The register's entry for the claim's policy, once `coverage_check` has read it. */
    bool have_record;
    double coverage_limit;
    uint64_t months_insured;
    uint64_t prior_claims_12m;
    /* P(suspicious) and the inference it came from, once `assess` has asked. */
    bool have_risk;
    double risk;
    wd_inference_id inference;
    /* Why the agent decided as it did, kept for the output. */
    const char *reasons[MAX_REASONS];
    size_t reason_count;
} learned;

static void add_reason(const char *reason) {
    if (learned.reason_count < MAX_REASONS) {
        learned.reasons[learned.reason_count++] = wd_keep_str(reason);
    }
}

/* The JSON read `status` stopped at, as the run's failure reason. */
static wd_status invalid(const char *what, wd_status status) {
    return status == WD_DATA_ERROR ? wd_fail(wd_format("%s: %s", what, wd_error())) : status;
}

static bool blank(const char *text) {
    for (; *text != '\0'; text++) {
        if (*text != ' ' && *text != '\t' && *text != '\n' && *text != '\r') {
            return false;
        }
    }
    return true;
}

/* The run's input, checked: a claim that cannot be triaged ends the run as failed. */
static wd_status read_claim(claim *c) {
    const char *input;
    WD_TRY(wd_input(&input));
    wd_status read = wd_get_string(input, "/claim_id", &c->claim_id);
    if (read == WD_OK) {
        read = wd_get_string(input, "/policy_number", &c->policy_number);
    }
    if (read == WD_OK) {
        read = wd_get_number(input, "/amount", &c->amount);
    }
    if (read == WD_OK) {
        read = wd_get_uint(input, "/incident_days_ago", &c->incident_days_ago);
    }
    if (read == WD_OK) {
        read = wd_get_string(input, "/description", &c->description);
    }
    if (read != WD_OK) {
        return invalid("run input", read);
    }
    if (blank(c->claim_id)) {
        return wd_fail("invalid claim: claim_id is empty");
    }
    if (!(c->amount > 0.0 && c->amount - c->amount == 0.0)) {
        return wd_fail(wd_format("invalid claim \"%s\": amount must be a positive number, got %g",
                                 c->claim_id, c->amount));
    }
    return WD_OK;
}

/* Asks for a transition, citing the inference it rests on if `cite`. A confidence gate
 * may send the run to review instead: this logs it and returns WD_ESCALATED, which ends
 * the step (the run waits for a person). */
static wd_status propose(const char *to, bool cite, wd_inference_id evidence) {
    wd_status status = cite ? wd_transition_citing(to, evidence) : wd_transition(to);
    if (status == WD_ESCALATED) {
        WD_TRY(wd_log(WD_WARN, wd_format("proposed %s; the confidence gate sent the run to %s",
                                         to, wd_escalated_to())));
    }
    return status;
}

static wd_status intake(void) {
    claim c;
    WD_TRY(read_claim(&c));
    WD_TRY(wd_log(WD_INFO, wd_format("claim %s on policy %s: %.2f for \"%s\", reported %llu days "
                                     "after the incident",
                                     c.claim_id, c.policy_number, c.amount, c.description,
                                     (unsigned long long)c.incident_days_ago)));
    if (c.incident_days_ago > MAX_REPORT_DELAY_DAYS) {
        add_reason(wd_format("reported %llu days after the incident, later than the %d days "
                             "allowed",
                             (unsigned long long)c.incident_days_ago, MAX_REPORT_DELAY_DAYS));
        return propose("declined", false, 0);
    }
    return propose("coverage_check", false, 0);
}

static wd_status coverage_check(void) {
    claim c;
    WD_TRY(read_claim(&c));
    wd_json query = {0};
    wd_json_begin_object(&query);
    wd_json_key(&query, "policy_number");
    wd_json_string(&query, c.policy_number);
    wd_json_end_object(&query);
    const char *record;
    wd_status asked = wd_tool("policy_register", wd_json_text(&query), &record);
    if (asked == WD_CALL_ERROR && wd_last_call_error()->kind == WD_NOT_FOUND) {
        add_reason(wd_format("policy %s is not in the register: a claims handler must check it",
                             c.policy_number));
        return propose("manual_review", false, 0);
    }
    WD_TRY(asked);
    const char *status;
    wd_status read = wd_get_string(record, "/status", &status);
    if (read == WD_OK) {
        read = wd_get_number(record, "/coverage_limit", &learned.coverage_limit);
    }
    if (read == WD_OK) {
        read = wd_get_uint(record, "/months_insured", &learned.months_insured);
    }
    if (read == WD_OK) {
        read = wd_get_uint(record, "/prior_claims_12m", &learned.prior_claims_12m);
    }
    if (read != WD_OK) {
        return invalid("tool result", read);
    }
    learned.have_record = true;
    const char *outcome = "assess";
    if (!wd_streq(status, "active")) {
        add_reason(wd_format("policy %s is %s, not active", c.policy_number, status));
        outcome = "declined";
    } else if (c.amount > learned.coverage_limit) {
        add_reason(wd_format("the amount claimed, %.2f, exceeds the coverage limit of %.2f",
                             c.amount, learned.coverage_limit));
        outcome = "declined";
    }
    return propose(outcome, false, 0);
}

static wd_status assess(void) {
    claim c;
    WD_TRY(read_claim(&c));
    if (!learned.have_record) {
        return wd_fail("assess before coverage_check");
    }
    /* The features of the `claim_risk` scorecard, as its card lists them. The policy
     * declares how each is computed, and Warden checks them before the scorecard is asked. */
    wd_json features = {0};
    wd_json_begin_object(&features);
    wd_json_key(&features, "amount_to_limit");
    wd_json_number(&features, c.amount / learned.coverage_limit);
    wd_json_key(&features, "prior_claims_12m");
    wd_json_number(&features, (double)learned.prior_claims_12m);
    wd_json_key(&features, "tenure_years");
    wd_json_number(&features, (double)learned.months_insured / 12.0);
    wd_json_key(&features, "report_delay_months");
    wd_json_number(&features, (double)c.incident_days_ago / 30.0);
    wd_json_end_object(&features);
    wd_inference inference;
    WD_TRY(wd_model("claim_risk", wd_json_text(&features), &inference));
    double risk;
    /* The value of a `claim_risk` inference: the probability of its positive label,
     * `suspicious`. */
    wd_status read = wd_get_number(inference.value, "/probability", &risk);
    if (read != WD_OK) {
        return invalid("model value", read);
    }
    learned.have_risk = true;
    learned.risk = risk;
    learned.inference = inference.id;
    WD_TRY(wd_log(WD_INFO,
                  wd_format("P(suspicious) %.4f, confidence %.4f", risk, inference.confidence)));
    if (risk < APPROVE_BELOW) {
        add_reason(wd_format("claim risk %.4f is below the approval cut-off %g", risk,
                             APPROVE_BELOW));
        return propose("approved", true, inference.id);
    }
    add_reason(wd_format("claim risk %.4f is at or above the approval cut-off %g: a claims "
                         "handler decides",
                         risk, APPROVE_BELOW));
    return propose("manual_review", false, 0);
}

/* In a terminal state: the decision and what it rests on. */
static wd_status decide(const char *state) {
    claim c;
    WD_TRY(read_claim(&c));
    wd_review_info review;
    WD_TRY(wd_review(&review));
    if (review.decided) {
        add_reason(wd_format("decided by %s (%s): %s", review.reviewer, review.role, review.note));
    }
    wd_json out = {0};
    wd_json_begin_object(&out);
    wd_json_key(&out, "decision");
    wd_json_string(&out, state);
    wd_json_key(&out, "claim_id");
    wd_json_string(&out, c.claim_id);
    wd_json_key(&out, "amount");
    wd_json_number(&out, c.amount);
    wd_json_key(&out, "reasons");
    wd_json_begin_array(&out);
    for (size_t i = 0; i < learned.reason_count; i++) {
        wd_json_string(&out, learned.reasons[i]);
    }
    wd_json_end_array(&out);
    /* P(suspicious), when the scorecard was asked. */
    wd_json_key(&out, "risk");
    if (learned.have_risk) {
        wd_json_number(&out, learned.risk);
    } else {
        wd_json_null(&out);
    }
    wd_json_key(&out, "inference_id");
    if (learned.have_risk) {
        wd_json_uint(&out, learned.inference);
    } else {
        wd_json_null(&out);
    }
    /* The claims handler's decision, when a person decided. */
    wd_json_key(&out, "review");
    if (review.decided) {
        wd_json_begin_object(&out);
        wd_json_key(&out, "outcome");
        wd_json_string(&out, review.outcome);
        wd_json_key(&out, "reviewer");
        wd_json_string(&out, review.reviewer);
        wd_json_key(&out, "role");
        wd_json_string(&out, review.role);
        wd_json_key(&out, "note");
        wd_json_string(&out, review.note);
        wd_json_key(&out, "by_timeout");
        wd_json_bool(&out, review.by_timeout);
        wd_json_end_object(&out);
    } else {
        wd_json_null(&out);
    }
    wd_json_end_object(&out);
    return wd_finish(wd_json_text(&out));
}

static wd_status step(void) {
    const char *state;
    WD_TRY(wd_state(&state));
    if (wd_streq(state, "intake")) {
        return intake();
    }
    if (wd_streq(state, "coverage_check")) {
        return coverage_check();
    }
    if (wd_streq(state, "assess")) {
        return assess();
    }
    if (wd_streq(state, "manual_review")) {
        return wd_log(WD_INFO, "awaiting a claims handler");
    }
    if (wd_streq(state, "approved") || wd_streq(state, "declined")) {
        return decide(state);
    }
    /* A state this agent was not built with (another policy) fails the run, named. */
    return wd_fail(wd_format("state \"%s\" is not a state of policy `claims-triage` as this "
                             "agent was built with it",
                             state));
}

WARDEN_AGENT(step)
