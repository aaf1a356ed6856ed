package chat

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Role is a member's role in a group.
type Role string

// Group roles. The owner is an admin who can never be removed or demoted.
const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Group limits.
const (
	MaxGroupMembers = 5000 // members of one group
	MaxGroupName    = 64   // characters of a group's name
)

// Errors of group changes. ErrNotAllowed is a permission refusal; the
// others are bad requests.
var (
	ErrNotAllowed = errors.New("not allowed")
	ErrBadGroup   = errors.New("invalid group change")
)

// NewGroupID returns a fresh group conversation id, "g:" and the message
// id alphabet in lower case (time-sortable, 80 random bits).
func NewGroupID(id string) ConvID { return ConvID("g:" + strings.ToLower(id)) }

// NewGroup describes a new group created by owner at ts, version 1.
func NewGroup(id ConvID, name string, owner UserID, members []UserID, ts int64) (*Conversation, error) {
	c := &Conversation{ID: id, Kind: KindGroup, CreatedAt: ts, Members: []UserID{owner}, Roles: map[UserID]Role{owner: RoleOwner}}
	if err := c.Change(owner, GroupChange{Name: &name, Add: members}, ts); err != nil {
		return nil, err
	}
	return c, nil
}

// RoleOf returns u's role and whether u is a member.
func (c *Conversation) RoleOf(u UserID) (Role, bool) {
	if !slices.Contains(c.Members, u) {
		return "", false
	}
	if r, ok := c.Roles[u]; ok {
		return r, true
	}
	return RoleMember, true
}

// IsAdmin reports whether u is the owner or an admin.
func (c *Conversation) IsAdmin(u UserID) bool {
	r, _ := c.RoleOf(u)
	return r == RoleOwner || r == RoleAdmin
}

// Owner returns the group's owner.
func (c *Conversation) Owner() UserID {
	for u, r := range c.Roles {
		if r == RoleOwner {
			return u
		}
	}
	return ""
}

// GroupChange is one change of a group by a member.
type GroupChange struct {
	Name   *string         // rename
	Add    []UserID        // new members (role member)
	Remove []UserID        // members to remove
	Roles  map[UserID]Role // admin or member, for existing or added members
}

// Change applies ch, made by actor at ts, and raises Version. Admins may
// do anything but remove or demote the owner; a plain member may only
// remove itself (leave). It returns an error wrapping ErrNotAllowed or
// ErrBadGroup and leaves c unchanged on error.
func (c *Conversation) Change(actor UserID, ch GroupChange, ts int64) error {
	admin := c.IsAdmin(actor)
	_, member := c.RoleOf(actor)
	leaving := member && len(ch.Remove) == 1 && ch.Remove[0] == actor && ch.Name == nil && len(ch.Add) == 0 && len(ch.Roles) == 0
	if !admin && !leaving {
		return fmt.Errorf("%w: only the group's admins can change it", ErrNotAllowed)
	}
	next := *c
	next.Members = slices.Clone(c.Members)
	next.Roles = make(map[UserID]Role, len(c.Roles))
	for u, r := range c.Roles {
		next.Roles[u] = r
	}
	if ch.Name != nil {
		name := strings.TrimSpace(*ch.Name)
		if name == "" || utf8.RuneCountInString(name) > MaxGroupName || !utf8.ValidString(name) {
			return fmt.Errorf("%w: a group's name is 1-%d characters of UTF-8", ErrBadGroup, MaxGroupName)
		}
		next.Name = name
	}
	for _, u := range ch.Add {
		if _, err := ParseUserID(string(u)); err != nil {
			return fmt.Errorf("%w: %v", ErrBadGroup, err)
		}
		next.Members = appendUnique(next.Members, u)
	}
	for _, u := range ch.Remove {
		if c.Roles[u] == RoleOwner {
			return fmt.Errorf("%w: the owner cannot be removed", ErrNotAllowed)
		}
		next.Members = slices.DeleteFunc(next.Members, func(m UserID) bool { return m == u })
		delete(next.Roles, u)
	}
	for u, r := range ch.Roles {
		switch {
		case r != RoleAdmin && r != RoleMember:
			return fmt.Errorf("%w: role %q: want admin or member", ErrBadGroup, r)
		case c.Roles[u] == RoleOwner:
			return fmt.Errorf("%w: the owner's role cannot change", ErrNotAllowed)
		case !slices.Contains(next.Members, u):
			return fmt.Errorf("%w: %s is not a member", ErrBadGroup, u)
		case r == RoleAdmin:
			next.Roles[u] = RoleAdmin
		default:
			delete(next.Roles, u)
		}
	}
	if len(next.Members) > MaxGroupMembers {
		return fmt.Errorf("%w: a group has at most %d members", ErrBadGroup, MaxGroupMembers)
	}
	slices.Sort(next.Members)
	next.Version++
	next.UpdatedAt = ts
	*c = next
	return nil
}

// MembershipDiff returns the users in after but not before (added) and in
// before but not after (removed).
func MembershipDiff(before, after []UserID) (added, removed []UserID) {
	for _, u := range after {
		if !slices.Contains(before, u) {
			added = append(added, u)
		}
	}
	for _, u := range before {
		if !slices.Contains(after, u) {
			removed = append(removed, u)
		}
	}
	return added, removed
}

func appendUnique(s []UserID, u UserID) []UserID {
	if slices.Contains(s, u) {
		return s
	}
	return append(s, u)
}
