package tenancy

import (
	"context"
	"fmt"
	"slices"
)

// User returns one user by ID.
func (s *Service) User(ctx context.Context, id int64) (User, error) {
	u, err := s.store.UserByID(ctx, id)
	if err != nil {
		return User{}, fmt.Errorf("user: %w", err)
	}
	return u, nil
}

// Org returns one org by ID.
func (s *Service) Org(ctx context.Context, id int64) (Org, error) {
	o, err := s.store.OrgByID(ctx, id)
	if err != nil {
		return Org{}, fmt.Errorf("org: %w", err)
	}
	return o, nil
}

// Namespace returns one namespace by ID.
func (s *Service) Namespace(ctx context.Context, id int64) (Namespace, error) {
	n, err := s.store.NamespaceByID(ctx, id)
	if err != nil {
		return Namespace{}, fmt.Errorf("namespace: %w", err)
	}
	return n, nil
}

// NamespaceByName returns one namespace by its Kubernetes name.
func (s *Service) NamespaceByName(ctx context.Context, name string) (Namespace, error) {
	n, err := s.store.NamespaceByName(ctx, name)
	if err != nil {
		return Namespace{}, fmt.Errorf("namespace by name: %w", err)
	}
	return n, nil
}

// Invitation returns one invitation by ID.
func (s *Service) Invitation(ctx context.Context, id int64) (Invitation, error) {
	i, err := s.store.InvitationByID(ctx, id)
	if err != nil {
		return Invitation{}, fmt.Errorf("invitation: %w", err)
	}
	return i, nil
}

// OrgRoleOf returns userID's role in an org, NOT_FOUND when not a member.
func (s *Service) OrgRoleOf(ctx context.Context, orgID, userID int64) (OrgRole, error) {
	m, err := s.store.OrgMember(ctx, orgID, userID)
	if err != nil {
		return "", fmt.Errorf("org role: %w", err)
	}
	return m.Role, nil
}

// RoleOf returns userID's role in a namespace, NOT_FOUND when not a member.
func (s *Service) RoleOf(ctx context.Context, nsID, userID int64) (Role, error) {
	m, err := s.store.Member(ctx, nsID, userID)
	if err != nil {
		return "", fmt.Errorf("role: %w", err)
	}
	return m.Role, nil
}

// maxBatch bounds the keys of one batch load.
const maxBatch = 1000

// uniqueIDs returns ids sorted without duplicates, and an error when there
// are more than maxBatch.
func uniqueIDs(ids []int64) ([]int64, error) {
	out := slices.Clone(ids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > maxBatch {
		return nil, fmt.Errorf("batch of %d keys exceeds %d", len(out), maxBatch)
	}
	return out, nil
}

// byKey indexes rows by key.
func byKey[T any](rows []T, key func(T) int64) map[int64]T {
	m := make(map[int64]T, len(rows))
	for _, r := range rows {
		m[key(r)] = r
	}
	return m
}

// groupBy groups rows by key, keeping their order.
func groupBy[T any](rows []T, key func(T) int64) map[int64][]T {
	m := make(map[int64][]T)
	for _, r := range rows {
		m[key(r)] = append(m[key(r)], r)
	}
	return m
}

// batch runs one store query for the unique ids, or none when there are
// none.
func batch[T any](ctx context.Context, what string, ids []int64, load func(context.Context, []int64) ([]T, error)) ([]T, error) {
	keys, err := uniqueIDs(ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	rows, err := load(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return rows, nil
}

// UsersByIDs loads users in one query; missing IDs are absent from the map.
func (s *Service) UsersByIDs(ctx context.Context, ids []int64) (map[int64]User, error) {
	rows, err := batch(ctx, "users by ids", ids, s.store.UsersByIDs)
	return byKey(rows, func(u User) int64 { return u.ID }), err
}

// OrgsByIDs loads orgs in one query; missing IDs are absent from the map.
func (s *Service) OrgsByIDs(ctx context.Context, ids []int64) (map[int64]Org, error) {
	rows, err := batch(ctx, "orgs by ids", ids, s.store.OrgsByIDs)
	return byKey(rows, func(o Org) int64 { return o.ID }), err
}

// NamespacesByIDs loads namespaces in one query; missing IDs are absent.
func (s *Service) NamespacesByIDs(ctx context.Context, ids []int64) (map[int64]Namespace, error) {
	rows, err := batch(ctx, "namespaces by ids", ids, s.store.NamespacesByIDs)
	return byKey(rows, func(n Namespace) int64 { return n.ID }), err
}

// NamespacesByOrgIDs loads each org's namespaces (by ID) in one query.
func (s *Service) NamespacesByOrgIDs(ctx context.Context, orgIDs []int64) (map[int64][]Namespace, error) {
	rows, err := batch(ctx, "namespaces by org ids", orgIDs, s.store.NamespacesByOrgIDs)
	return groupBy(rows, func(n Namespace) int64 { return n.OrgID }), err
}

// MembersByNamespaceIDs loads each namespace's members (by user ID) in one
// query.
func (s *Service) MembersByNamespaceIDs(ctx context.Context, nsIDs []int64) (map[int64][]Member, error) {
	rows, err := batch(ctx, "members by namespace ids", nsIDs, s.store.MembersByNamespaceIDs)
	return groupBy(rows, func(m Member) int64 { return m.NamespaceID }), err
}

// OrgsByUserIDs loads each user's orgs with their role in one query.
func (s *Service) OrgsByUserIDs(ctx context.Context, userIDs []int64) (map[int64][]OrgMembership, error) {
	rows, err := batch(ctx, "orgs by user ids", userIDs, s.store.OrgsByUserIDs)
	return groupBy(rows, func(m OrgMembership) int64 { return m.UserID }), err
}

// NamespacesByUserIDs loads each user's namespaces with their role in one
// query.
func (s *Service) NamespacesByUserIDs(ctx context.Context, userIDs []int64) (map[int64][]NamespaceMembership, error) {
	rows, err := batch(ctx, "namespaces by user ids", userIDs, s.store.NamespacesByUserIDs)
	return groupBy(rows, func(m NamespaceMembership) int64 { return m.UserID }), err
}

// OrgTreeDepth is how far below a user's orgs OrgTree reads.
type OrgTreeDepth int

// The depths of an org tree.
const (
	// TreeNamespaces reads the orgs and their namespaces.
	TreeNamespaces OrgTreeDepth = iota + 1
	// TreeMembers reads, as well, the namespaces' members and their users.
	TreeMembers
)

// OrgTree is what lies below one user's orgs, grouped as the batch
// loaders group it, so that it can answer for them.
type OrgTree struct {
	// Orgs are the user's orgs, by ID, with the user's role.
	Orgs []OrgMembership
	// Namespaces holds each org's namespaces by ID; every org of Orgs has
	// an entry.
	Namespaces map[int64][]Namespace
	// Members holds each namespace's members by user ID, and Users their
	// users; with TreeMembers, every namespace of Namespaces has an entry.
	Members map[int64][]Member
	Users   map[int64]User
}

// OrgTree reads the orgs of a user and, down to depth, their namespaces,
// the namespaces' members and the members' users, in one query: what
// me { orgs { namespaces { members { user } } } } shows. It reads whole
// lists, as the batch loaders do; whoever shows them authorizes each
// level.
func (s *Service) OrgTree(ctx context.Context, userID int64, depth OrgTreeDepth) (OrgTree, error) {
	if depth != TreeNamespaces && depth != TreeMembers {
		return OrgTree{}, fmt.Errorf("org tree: depth %d", depth)
	}
	t, err := s.store.OrgTree(ctx, userID, depth)
	if err != nil {
		return OrgTree{}, fmt.Errorf("org tree: %w", err)
	}
	return t, nil
}
