package graph

import (
	"log/slog"
	"time"

	"github.com/tenantplane/tenantplane/tenancy"
)

// Resolver holds the dependencies of every resolver, nothing else.
type Resolver struct {
	tenancy     *tenancy.Service
	authz       Authorizer
	kubeconfigs Kubeconfigs
	suspender   Suspender
	hosts       Hosts
	usage       Usage
	ledger      BillingLedger
	giftCodes   GiftCodes
	debt        Debt
	payments    Payments
	pricing     Pricing
	admin       BillingAdmin
	now         func() time.Time
	log         *slog.Logger
}
