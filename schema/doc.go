// Package schema embeds what defines the shape of tenantplane's data: the
// numbered SQL migrations, the GraphQL SDL and the Casbin model and policy.
//
// It imports nothing else of tenantplane.
package schema
