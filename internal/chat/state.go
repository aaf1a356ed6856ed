package chat

import (
	"encoding/json"
	"fmt"
)

// chat-state record types.
const (
	TypeUser         = "user"
	TypeConversation = "conversation"
)

// User is a known user.
type User struct {
	ID        UserID `json:"id"`
	CreatedAt int64  `json:"created_at"` // Unix milliseconds
	// PasswordHash is the account's argon2id hash (auth.Hasher), empty
	// for a user first seen in open auth mode. It is part of the durable
	// record only: never put a User in an answer to a client; answer
	// with its ID and CreatedAt.
	PasswordHash string `json:"password_hash,omitempty"`
}

// Conversation is a conversation's durable description. A group's record
// is its whole current state (name, members, roles): chat-state is
// compacted, and each change writes the record again with Version raised,
// so applying records in any order keeps the one with the highest Version.
type Conversation struct {
	ID        ConvID   `json:"id"`
	Kind      Kind     `json:"kind"`
	Members   []UserID `json:"members,omitempty"`
	CreatedAt int64    `json:"created_at"`
	// Name is a group's display name.
	Name string `json:"name,omitempty"`
	// Roles names a group's owner and admins; members not listed are
	// plain members (RoleMember).
	Roles map[UserID]Role `json:"roles,omitempty"`
	// Version counts a group's changes, from 1 at creation.
	Version int64 `json:"version,omitempty"`
	// UpdatedAt is when Version was written, Unix milliseconds.
	UpdatedAt int64 `json:"updated_at,omitempty"`
}

// StateRecord is a chat-state value: the latest description of one
// entity. The topic is compacted, so its key (Key) names the entity.
type StateRecord struct {
	Type         string        `json:"type"`
	User         *User         `json:"user,omitempty"`
	Conversation *Conversation `json:"conversation,omitempty"`
}

// Key returns the record's compaction key: "user:<id>" or "conv:<id>".
func (r *StateRecord) Key() []byte {
	switch {
	case r.User != nil:
		return []byte("user:" + string(r.User.ID))
	case r.Conversation != nil:
		return []byte("conv:" + string(r.Conversation.ID))
	}
	return nil
}

// Encode returns the JSON encoding of r.
func (r *StateRecord) Encode() []byte { return mustJSON(r) }

// DecodeStateRecord parses a chat-state value.
func DecodeStateRecord(b []byte) (*StateRecord, error) {
	var r StateRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode state record: %w", err)
	}
	if r.Type == TypeUser && r.User == nil || r.Type == TypeConversation && r.Conversation == nil {
		return nil, fmt.Errorf("decode state record: %s record without its body", r.Type)
	}
	return &r, nil
}
