package chat

import (
	"errors"
	"testing"
)

func TestGroupChangesFollowTheRoles(t *testing.T) {
	g, err := NewGroup("g:x", "team", "owner", []UserID{"amy", "bo"}, 1)
	if err != nil || g.Version != 1 || len(g.Members) != 3 {
		t.Fatalf("new group: %+v, %v", g, err)
	}
	name := "renamed"
	for _, tc := range []struct {
		name  string
		actor UserID
		ch    GroupChange
		want  error
	}{
		{"a plain member cannot rename", "amy", GroupChange{Name: &name}, ErrNotAllowed},
		{"nobody removes the owner", "owner", GroupChange{Remove: []UserID{"owner"}}, ErrNotAllowed},
		{"nobody demotes the owner", "owner", GroupChange{Roles: map[UserID]Role{"owner": RoleMember}}, ErrNotAllowed},
		{"a role is admin or member", "owner", GroupChange{Roles: map[UserID]Role{"amy": RoleOwner}}, ErrBadGroup},
		{"roles are for members", "owner", GroupChange{Roles: map[UserID]Role{"zed": RoleAdmin}}, ErrBadGroup},
		{"members have valid ids", "owner", GroupChange{Add: []UserID{"Zed"}}, ErrBadGroup},
		{"a non-member cannot change anything", "zed", GroupChange{Remove: []UserID{"zed"}}, ErrNotAllowed},
	} {
		before := g.Version
		if err := g.Change(tc.actor, tc.ch, 2); !errors.Is(err, tc.want) || g.Version != before {
			t.Errorf("%s: %v (version %d), want %v and no change", tc.name, err, g.Version, tc.want)
		}
	}
	if err := g.Change("owner", GroupChange{Roles: map[UserID]Role{"amy": RoleAdmin}}, 3); err != nil || !g.IsAdmin("amy") {
		t.Fatalf("promote: %v", err)
	}
	if err := g.Change("amy", GroupChange{Name: &name, Add: []UserID{"cy"}, Remove: []UserID{"bo"}}, 4); err != nil {
		t.Fatalf("an admin's change: %v", err)
	}
	if err := g.Change("cy", GroupChange{Remove: []UserID{"cy"}}, 5); err != nil {
		t.Fatalf("a member leaves: %v", err)
	}
	if g.Version != 4 || g.Name != "renamed" || len(g.Members) != 2 || g.UpdatedAt != 5 {
		t.Fatalf("after the changes: %+v", g)
	}
	added, removed := MembershipDiff([]UserID{"a", "b"}, []UserID{"b", "c"})
	if len(added) != 1 || added[0] != "c" || len(removed) != 1 || removed[0] != "a" {
		t.Fatalf("diff: %v %v", added, removed)
	}
}
