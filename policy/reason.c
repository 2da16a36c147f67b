/* reason.c -- names and HTTP statuses of refusal reasons */
#include "reason.h"

const char *reason_str(enum reason r)
{
	switch (r) {
	case REASON_NONE: return "none";
	case REASON_NOT_ALLOWED: return "not-allowed";
	case REASON_DENIED: return "denied";
	case REASON_PRIVATE_ADDRESS: return "private-address";
	case REASON_PROXY_LOOP: return "proxy-loop";
	case REASON_SNI_MISMATCH: return "sni-mismatch";
	case REASON_HOST_MISMATCH: return "host-mismatch";
	case REASON_PLACEHOLDER_LEAK: return "placeholder-leak";
	case REASON_DNS_FAILURE: return "dns-failure";
	case REASON_CONNECT_FAILED: return "connect-failed";
	case REASON_UPSTREAM_CERT: return "upstream-cert-invalid";
	case REASON_BAD_REQUEST: return "bad-request";
	case REASON_UNKNOWN_SOURCE: return "unknown-source";
	case REASON_RULE_DENIED: return "rule-denied";
	case REASON_UNREDACTABLE_ENCODING: return "unredactable-encoding";
	case REASON_BODY_TOO_LARGE: return "body-too-large";
	case REASON_H2_PRIOR_KNOWLEDGE: return "h2-prior-knowledge";
	}
	return "unknown";
}

int reason_status(enum reason r)
{
	switch (r) {
	case REASON_DNS_FAILURE:
	case REASON_CONNECT_FAILED:
	case REASON_UPSTREAM_CERT:
	case REASON_UNREDACTABLE_ENCODING:
		return 502;
	case REASON_HOST_MISMATCH:
		return 421;
	case REASON_BAD_REQUEST:
	case REASON_H2_PRIOR_KNOWLEDGE:
		return 400;
	case REASON_BODY_TOO_LARGE:
		return 413;
	default:
		return 403;
	}
}
