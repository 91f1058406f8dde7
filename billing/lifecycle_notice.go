package billing

import (
	"fmt"
	"strings"
)

// DebtMail is the notice mailed to an org's owners and billing members
// about a transition.
type DebtMail struct {
	// Kind is the mail outbox kind, "billing_<event>".
	Kind    string
	Subject string
	Text    string
}

// NewDebtMail writes the notice of a transition of org orgName;
// nsName names the namespace of a spending-limit event.
func NewDebtMail(tr DebtTransition, orgName, nsName string) DebtMail {
	bal := FormatMicros(tr.Usable) + " " + tr.Currency
	var subject, body string
	switch tr.Event {
	case DebtEventLowBalance:
		subject = fmt.Sprintf("Low balance on %s", orgName)
		body = fmt.Sprintf("The usable balance of %s is low: %s.\n\nTop up to keep your namespaces running.", orgName, bal)
	case DebtEventCritical:
		subject = fmt.Sprintf("Critical balance on %s", orgName)
		body = fmt.Sprintf("The usable balance of %s is almost used up: %s.\n\nTop up now: once it reaches zero, "+
			"your namespaces will be suspended after the grace period.", orgName, bal)
	case DebtEventDebt:
		subject = fmt.Sprintf("%s is in debt", orgName)
		body = fmt.Sprintf("The usable balance of %s is %s.\n\nPay the debt before the grace period ends, "+
			"or every namespace of %s will be suspended.", orgName, bal, orgName)
	case DebtEventSuspended:
		subject = fmt.Sprintf("The namespaces of %s are suspended", orgName)
		body = fmt.Sprintf("The grace period ended with %s still in debt (%s). Its namespaces are suspended: "+
			"workloads are scaled to zero, nothing is deleted.\n\nA payment that brings the balance above zero "+
			"resumes them exactly as they were.", orgName, bal)
	case DebtEventResumed:
		subject = fmt.Sprintf("The namespaces of %s are resumed", orgName)
		body = fmt.Sprintf("Thank you: the usable balance of %s is %s. Its namespaces are resumed.", orgName, bal)
	case DebtEventRecovered:
		subject = fmt.Sprintf("Balance of %s restored", orgName)
		body = fmt.Sprintf("The usable balance of %s is %s.", orgName, bal)
	case DebtEventWorkloadsDeleted:
		subject = fmt.Sprintf("The workloads of %s were deleted", orgName)
		body = fmt.Sprintf("%s stayed suspended in debt (%s), so the workloads of its namespaces were deleted. "+
			"Volumes and their data are kept.", orgName, bal)
	case SpendEventLimitReached:
		subject = fmt.Sprintf("Namespace %s reached its spending limit", nsName)
		body = fmt.Sprintf("Namespace %s of %s reached its monthly spending limit and is suspended until the limit "+
			"is raised or the month ends.", nsName, orgName)
	case SpendEventLimitLifted:
		subject = fmt.Sprintf("Namespace %s is resumed", nsName)
		body = fmt.Sprintf("The spending limit of namespace %s of %s no longer holds; the namespace is resumed.", nsName, orgName)
	default:
		subject = fmt.Sprintf("Billing notice for %s", orgName)
		body = fmt.Sprintf("%s: %s.", orgName, tr.Event)
	}
	var b strings.Builder
	b.WriteString(body)
	b.WriteString("\n\nWhy: ")
	b.WriteString(tr.Cause)
	b.WriteString("\n")
	return DebtMail{Kind: "billing_" + string(tr.Event), Subject: subject, Text: b.String()}
}
